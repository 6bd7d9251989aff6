"""Ctrl-C and SIGTERM end a long onnxruntime call too.

Python runs signal handlers in the main thread between bytecodes, so while onnxruntime computes
inside C++ a KeyboardInterrupt waits until the call returns, which for a large or adversarial
model may be never. onnxruntime checks `RunOptions.terminate` between nodes; so every session
call runs with RunOptions registered here, and `install()` (the CLI does it once) has the
interpreter write each signal's number to a socket (signal.set_wakeup_fd, done in C as the
signal arrives) that a watcher thread reads, setting `terminate` on every registered RunOptions.
The call then returns at the next node, and the signal's own handler raises as usual.
Standard library and onnxruntime only.
"""

from __future__ import annotations

import signal
import socket
import threading
import weakref

_registered: weakref.WeakSet = weakref.WeakSet()  # RunOptions of the loaded models
_installed: list[socket.socket] = []  # the wakeup socket pair, once installed


def run_options():
    """A new onnxruntime.RunOptions that a signal terminates (after install())."""
    import onnxruntime as ort

    options = ort.RunOptions()
    _registered.add(options)
    return options


def terminate_all() -> None:
    for options in list(_registered):
        options.terminate = True


def install() -> None:
    """Route SIGINT and SIGTERM to terminate_all, from the main thread, once; elsewhere, or where a
    wakeup descriptor is already in use, it does nothing."""
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    try:
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except (ValueError, OSError):
        reader.close()
        writer.close()
        return
    if previous != -1:  # someone else's (an event loop): give it back
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
        return
    _installed.extend((reader, writer))
    threading.Thread(target=_watch, args=(reader,), name="lenet-edge-signals", daemon=True).start()


_ENDING = frozenset({signal.SIGINT, signal.SIGTERM})


def _watch(reader: socket.socket) -> None:
    while True:
        try:
            received = reader.recv(64)  # one byte per signal: its number
        except OSError:
            return
        if not received:
            return
        if _ENDING.intersection(received):  # not a handled signal that ends nothing (e.g. a library's SIGCHLD)
            terminate_all()
