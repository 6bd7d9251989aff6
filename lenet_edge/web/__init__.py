"""The browser as a device: a static site that runs the models with onnxruntime-web (WebAssembly).

site.build_site writes the page, its scripts, the models, onnxruntime-web's runtime files and the
self-check (official test digits with the logits native onnxruntime gives them); serve.start_server
serves a built site with the headers the threaded WebAssembly build needs. numpy + onnxruntime only.
Nothing is imported here, so that the CLI's `web` command loads no numpy until it runs.
"""
