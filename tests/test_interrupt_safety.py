"""Issue 20 item 1: an interrupt never lands inside an import.

Found by the browser (tests/test_browser_paths.py): 05's scorecard imports torch lazily (mteb loads
sentence-transformers for its first model), and the stop button pressed a few seconds into the cell raised
KeyboardInterrupt halfway through torch's import. Python then keeps the half-initialised submodules, and every
later use in that kernel fails ("partially initialized module 'torch' has no attribute ...", "function 'abs'
already has a docstring"): the rerun of the scorecard showed a traceback until the kernel was restarted.

The import here interrupts itself (SIGINT to this process from the module's own code, so it lands inside the
import whatever the machine's speed): the import must complete, the interrupt must still stop the work (one
RunInterrupted), and nothing may arrive after the guarded work.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

import pytest

from tke_playbook.errors import RunInterrupted
from tke_playbook.loadgen.sync import interruptible

MODULE = "tke_i20_self_interrupting_import"


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_an_interrupt_during_an_import_waits_for_it_then_stops_the_work(tmp_path, monkeypatch):
    (tmp_path / f"{MODULE}.py").write_text("import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\n"
                                           "time.sleep(0.3)\ncomplete = True\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(RunInterrupted, match="stopped on purpose"):  # the interrupt is not lost
            with interruptible(lambda: "the work: stopped on purpose"):
                __import__(MODULE)
        assert getattr(sys.modules.get(MODULE), "complete", False), "the interrupt broke the import off halfway"
        time.sleep(0.3)  # a redelivered SIGINT landing now, outside the guard, would raise KeyboardInterrupt here
    finally:
        sys.modules.pop(MODULE, None)
    assert signal.getsignal(signal.SIGINT) is handler


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_a_preloading_import_stops_at_once_and_completes_behind(tmp_path, monkeypatch):
    """What the scorecard does with sentence-transformers: the import runs in a helper thread, the stop button stops
    the wait at once, and the module is whole afterwards. The module interrupts itself, then waits for the test."""
    import builtins

    from tke_playbook.loadgen.sync import preload

    name = MODULE + "_preloaded"
    (tmp_path / f"{name}.py").write_text("import builtins, os, signal\nos.kill(os.getpid(), signal.SIGINT)\n"
                                         "builtins.tke_i20_gate.wait(20)\ncomplete = True\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    gate = threading.Event()
    monkeypatch.setattr(builtins, "tke_i20_gate", gate, raising=False)
    try:
        with pytest.raises(RunInterrupted):
            with interruptible(lambda: "stopped while loading"):
                preload(name)
        assert not getattr(sys.modules.get(name), "complete", False), "the stop waited for the import to end"
        gate.set()
        deadline = time.monotonic() + 60
        while not getattr(sys.modules.get(name), "complete", False) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert getattr(sys.modules.get(name), "complete", False), "the import did not complete behind the stop"
    finally:
        gate.set()
        sys.modules.pop(name, None)
