"""The real entry point: `python -m tyd --config` as a process joins an in-process node,
`tyd status` shows the map, and SIGTERM sends LEAVE."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from helpers import converged, name, node_config, raw_config, wait_for

from builder.pki import Pki
from tyd.daemon import Node

ROOT = Path(__file__).parents[2]
SLOW = {"suspect_after_seconds": 20, "remove_after_seconds": 40}


def test_daemon_process_joins_reports_status_and_leaves_on_sigterm(
    pki: Pki, port: int, run_dir: Path, tmp_path: Path
) -> None:
    cfg_path = tmp_path / "tyd.json"
    cfg_path.write_text(json.dumps(raw_config(pki, 2, port, run_dir, **SLOW)))

    async def scenario() -> None:
        seed = Node(node_config(pki, 1, port, run_dir, **SLOW))
        await seed.start()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tyd",
            "--config",
            str(cfg_path),
            cwd=ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await wait_for(
                lambda: seed.live_names() == {name(1), name(2)}, 15, "the tyd process to join"
            )
            status_file = run_dir / name(2) / "status.json"
            await wait_for(
                lambda: status_file.exists() and json.loads(status_file.read_text())["joined"],
                10,
                "the process to write its status",
            )
            shown = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tyd",
                "status",
                "--config",
                str(cfg_path),
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await shown.communicate()
            text = out.decode()
            assert shown.returncode == 0
            assert "Philip (member)" in text and "node01" in text and "node02" in text
            assert "refused=0" in text
            proc.send_signal(signal.SIGTERM)
            await wait_for(
                lambda: converged([seed], {name(1)}), 5, "the LEAVE of the terminated process"
            )
            assert await asyncio.wait_for(proc.wait(), 10) == 0
            assert proc.stderr is not None
            log = (await proc.stderr.read()).decode()
            assert "leaving: telling 1 members" in log and "Traceback" not in log
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await seed.shutdown(leave=False)

    asyncio.run(scenario())
