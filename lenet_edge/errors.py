"""The one exception hierarchy of lenet-edge; each kind carries its CLI exit code.

Exit codes: 0 ok, 1 unexpected bug, 2 usage (click: an unknown option, a malformed value or one
out of its range), 3 data, 4 model, 5 validation, 6 output, 7 missing dependency, 130 interrupted.
"""


class LenetEdgeError(Exception):
    """Base of every error lenet-edge raises on purpose."""

    exit_code = 1


class DataError(LenetEdgeError):
    """An input file (IDX, image, .npy, dataset directory) is missing or malformed."""

    exit_code = 3


class ModelError(LenetEdgeError):
    """A checkpoint or ONNX model is missing, malformed or not what was expected."""

    exit_code = 4


class ValidationError(LenetEdgeError):
    """A produced artefact failed its check (parity, accuracy gate, graph structure)."""

    exit_code = 5


class OutputError(LenetEdgeError):
    """An output path exists without --force, or cannot be written."""

    exit_code = 6


class DependencyError(LenetEdgeError):
    """An optional dependency (a host-side extra) is not installed."""

    exit_code = 7


def require(module: str, extra: str):
    """Import an optional dependency, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyError(
            f"{module} is not installed (needed here); install it with "
            f"pip install 'lenet-edge[{extra}]'"
        ) from exc


def require_extra(extra: str, *modules: str) -> None:
    """Check that every module a command needs is installed, before the command starts any work."""
    for module in modules:
        require(module, extra)


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an error from a library that raises long, untyped messages."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]
