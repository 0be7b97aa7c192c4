"""In process: a stuck inference stops the watchdog pings, and shutdown stays bounded."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from edge_infer.pipeline.config import parse_config
from edge_infer.pipeline.daemon import Daemon
from edge_infer.pipeline.rtsp_loopback import free_port
from tests.pipeline.helpers import NotifyListener


def test_stuck_inference_withholds_watchdog_and_shutdown_is_bounded(
    synth_cameras: Path, tiny_engine: Path, tmp_path: Path
) -> None:
    cfg = parse_config(
        {
            "device_id": "stuck",
            "engine": {"path": str(tiny_engine)},
            "cameras": [
                {"type": "file", "id": f"c{k}", "path": str(synth_cameras / f"cam0{k}.avi")}
                for k in range(2)
            ],
            "inference": {"workers": 1, "warmup": False},
            "publisher": {"endpoints": [f"tcp://127.0.0.1:{free_port()}"]},
            "health": {"stall_after_s": 1.0, "shutdown_timeout_s": 1.5},
        }
    )
    notify = NotifyListener(tmp_path / "notify.sock")
    daemon = Daemon(cfg, notify_socket=str(notify.path), watchdog_usec=400_000)
    daemon.start()
    stop = threading.Event()
    server = threading.Thread(target=daemon.serve, args=(stop,), daemon=True)
    server.start()
    gate = threading.Event()
    try:
        assert notify.wait_for("READY=1", 5)
        end = time.monotonic() + 10
        while notify.count("WATCHDOG=1") < 3 and time.monotonic() < end:
            time.sleep(0.05)
        assert notify.count("WATCHDOG=1") >= 3

        # inference hangs from now on (as a wedged GPU or a deadlocked kernel would)
        worker = daemon.pool.workers[0]
        execute = worker.context.execute_bound  # the worker runs its bound batch buffers
        worker.context.execute_bound = lambda: (gate.wait(), execute())[1]
        t_stuck = time.monotonic()
        time.sleep(2.5)
        last_done = daemon.progress.last_batch
        assert last_done is not None and last_done < t_stuck + 1.4  # the batch in flight
        pings, withheld = daemon.watchdog.pings, daemon.watchdog.withheld
        time.sleep(1.0)
        # no pings once no batch completed for stall_after_s; the health loop keeps ticking
        assert daemon.watchdog.pings == pings
        assert daemon.watchdog.withheld >= withheld + 3
        assert any("STATUS=stalled" in m for _, m in notify.messages)

        stop.set()
        server.join(2)
        t0 = time.monotonic()
        drained = daemon.shutdown()
        assert not drained  # the stuck batch could not finish...
        assert time.monotonic() - t0 < 1.5 + 1.0  # ...but shutdown kept its bound
        assert notify.count("STOPPING=1") == 1
    finally:
        gate.set()
        stop.set()
        for s in daemon.sources:
            s.join(5)
        assert daemon.publisher.close(5)  # once the batch came unstuck, everything closes
        notify.close()
