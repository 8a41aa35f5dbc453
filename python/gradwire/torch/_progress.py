"""Completes the hook's futures: one thread that polls gradwire requests (gradwire's
non-blocking runs advance when tested) and runs each bucket's finisher once its requests are
done. All gradwire calls of the torch layer go through `lock`, since the C ABI allows one
thread at a time on a communicator."""
import threading
import time

from .. import errors


class Progress:
    def __init__(self, timeout_s):
        self.lock = threading.Lock()
        self._timeout_s = timeout_s
        self._cv = threading.Condition()
        self._pending = []  # [requests, future, finish, posted_at]
        self._thread = threading.Thread(target=self._loop, name="gradwire-progress", daemon=True)
        self._thread.start()

    def submit(self, requests, future, finish, on_error=None):
        with self._cv:
            self._pending.append([list(requests), future, finish, time.monotonic(), on_error])
            self._cv.notify()

    def idle(self):
        with self._cv:
            return not self._pending

    def drain(self):
        """Waits until every submitted item has completed or failed."""
        while not self.idle():
            time.sleep(0.0005)

    def _loop(self):
        while True:
            with self._cv:
                while not self._pending:
                    self._cv.wait()
                items = list(self._pending)
            progressed = False
            for item in items:
                if self._advance(item):
                    progressed = True
                    with self._cv:
                        self._pending.remove(item)
            if not progressed:
                time.sleep(0.0001)

    def _advance(self, item):
        """True once the item is finished (completed or failed)."""
        requests, future, finish, posted, on_error = item
        try:
            with self.lock:
                if time.monotonic() - posted > self._timeout_s:
                    # Past the deadline: wait() applies gradwire's policy (returns
                    # TimeoutError at once under on_timeout="return", naming the culprit).
                    for r in requests:
                        r.wait()
                elif not all(r.test() for r in requests):
                    return False
                result = finish()
        except BaseException as e:  # every error reaches the training loop through the future
            # DDP reraises it as a RuntimeError carrying this text: name the class in it.
            if isinstance(e, errors.Error):
                e = type(e)(f"gradwire.{type(e).__name__}: {e}", code=e.code)
            else:
                e = errors.InternalError(f"gradwire hook: {e!r}")
            if on_error is not None:
                on_error(e)
            future.set_exception(e)
            return True
        future.set_result(result)
        return True
