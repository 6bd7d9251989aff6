"""The `web` command: write the browser site, and serve it."""

from __future__ import annotations

from pathlib import Path

import click

from ..options import force_option


@click.command()
@click.argument("models", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="Write the site into this directory (it must not exist, unless --force).")
@click.option("--label", "labels", multiple=True,
              help="A name per model, in order (repeat the option), as in its bench report [default: each "
                   "file's stem, as lenet-edge bench names them].")
@click.option("--onnxruntime-web", "runtime_folder", type=click.Path(path_type=Path, file_okay=False),
              default=None, envvar="LENET_EDGE_ORT_WEB", show_envvar=True,
              help="Folder of the npm package onnxruntime-web (or its dist/) [default: the repository's "
                   "web/node_modules/onnxruntime-web].")
@click.option("--serve", "serve_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              metavar="DIR", help="Serve this site (e.g. the -o directory) with the cross-origin isolation "
                                  "headers WebAssembly threads need, until Ctrl-C.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on; 0.0.0.0 serves to the network (a phone on the same Wi-Fi).")
@click.option("--port", type=int, default=8000, show_default=True, help="Port to serve on (0: any free port).")
@force_option
def web(models, out, labels, runtime_folder, serve_dir, host, port, force) -> None:
    """Write a static site that runs MODEL.int8.onnx [and MODEL.onnx] in the browser with onnxruntime-web.

    The page reads a digit drawn with a mouse or finger, or a photo, by the same rules as `run`;
    checks itself on the official test digits against the logits native onnxruntime gave them
    (int8 bit-identical, fp32 within 1e-4); and benchmarks both models into a bench report that
    `lenet-edge compare` lines up with the host's.

    \b
        lenet-edge web model.int8.onnx model.onnx -o site
        lenet-edge web --serve site
    """
    if not models and serve_dir is None:
        raise click.UsageError("give MODEL.int8.onnx [MODEL.onnx] -o DIR to write a site, or --serve DIR")
    if models:
        from .site import build_site

        if len(models) > 2:
            raise click.UsageError(f"{len(models)} models given (expected MODEL.int8.onnx and optionally MODEL.onnx)")
        if out is None:
            raise click.UsageError("-o DIR is required to write a site")
        written = build_site(models[0], out, models[1] if len(models) == 2 else None, runtime_folder, force,
                             tuple(labels) or None)
        click.echo(f"site: {written['out']}/ ({', '.join(written['models'])}; self-check of "
                   f"{written['selfcheck_images']} test digits; onnxruntime-web {written['onnxruntime_web']})")
    if serve_dir is not None:
        _serve(serve_dir, host, port)


def _serve(directory: Path, host: str, port: int) -> None:
    from .serve import LOOPBACK, start_server

    server = start_server(directory, host, port)
    try:  # from here on Ctrl-C (or SIGTERM) stops the server, even before the address is printed
        if host != LOOPBACK and host != "localhost":
            click.echo(f"warning: serving to the network on {host}:{server.port}: anyone who can reach this "
                       f"machine can open the site (a phone on the same Wi-Fi: "
                       f"http://THIS-MACHINE'S-ADDRESS:{server.port}/)", err=True)
        click.echo(f"serving {directory}/ at {server.url} (Ctrl-C stops)")
        server.wait()
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM) is how a server is meant to stop: not an error
        click.echo("stopped")
    finally:
        server.stop()
