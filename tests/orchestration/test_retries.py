"""Steps that touch external services are retried when a server stays unreachable, and only then."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from resources.io_managers import _StoreBackedIOManager
from rotation_platform.storage.errors import StorageUnavailableError
from rotation_platform.storage.files import FileStore


FAILED: dict[str, int] = {}  # base_dir -> writes refused so far


class FlakyFiles(_StoreBackedIOManager):
    """Files, but the first ``failures`` writes find the server down."""

    base_dir: str
    failures: int = 1

    def _make_store(self):
        base, failures = self.base_dir, self.failures

        class Flaky(FileStore):
            def write(self, asset, partition, value):
                if FAILED.get(base, 0) < failures:
                    FAILED[base] = FAILED.get(base, 0) + 1
                    raise StorageUnavailableError("127.0.0.1:3306 did not answer; check that the server is running")
                return super().write(asset, partition, value)

        return Flaky(base)


@dg.asset
def frame() -> pd.DataFrame:
    return pd.DataFrame({"x": [1.0, 2.0]}, index=pd.DatetimeIndex(["2024-01-02", "2024-01-03"], name="session"))


@pytest.mark.parametrize("retries,ok", [(1, True), (0, False)])
def test_unreachable_store_retries_the_step(tmp_path, retries, ok) -> None:
    manager = FlakyFiles(base_dir=str(tmp_path / f"r{retries}"), failures=1, step_retries=retries,
                         step_retry_wait_s=0.0)
    result = dg.materialize([frame], resources={"io_manager": manager}, raise_on_error=False,
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success is ok
    kinds = [e.event_type_value for e in result.all_events]
    assert ("STEP_UP_FOR_RETRY" in kinds) is (retries > 0)
    if not ok:
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert "check that the server is running" in failure.event_specific_data.error.to_string()


def test_other_errors_are_not_retried(tmp_path) -> None:
    @dg.asset
    def broken() -> pd.DataFrame:
        raise ValueError("a bug, not an outage")

    manager = FlakyFiles(base_dir=str(tmp_path / "b"), failures=0, step_retries=3, step_retry_wait_s=0.0)
    result = dg.materialize([broken], resources={"io_manager": manager}, raise_on_error=False,
                            instance=dg.DagsterInstance.ephemeral())
    assert not result.success
    assert "STEP_UP_FOR_RETRY" not in [e.event_type_value for e in result.all_events]


def test_environments_choose_step_retries() -> None:
    from rotation_platform.config import load_config
    from resources.definitions import storage_io_manager

    storage = load_config().storage.model_copy(update={"backend": "mysql"})
    assert storage_io_manager(storage, "prod").step_retries == 3
    assert storage_io_manager(storage, "test").step_retries == 0
    local = load_config().storage
    assert not hasattr(storage_io_manager(local, "prod"), "store")  # files: nothing to retry
