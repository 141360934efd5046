"""One threaded HTTP listener that runs in the background of serve (pushes, the admin page)."""

from __future__ import annotations

import http.server
import threading


class BackgroundServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    thread_name = "listener"

    def start_background(self) -> threading.Thread:
        """Serve in a daemon thread (serve and tests); stop with stop()."""
        thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.2},
            daemon=True,
            name=self.thread_name,
        )
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
