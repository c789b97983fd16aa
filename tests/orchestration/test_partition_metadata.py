"""``add_partition_metadata`` records what one ``add_asset_metadata`` call per partition records, in one
update of the step's metadata, and refuses a partition the run does not target as Dagster does."""


import dagster as dg
import pytest

from assets._metadata import add_partition_metadata

PARTS = dg.MultiPartitionsDefinition({"pool": dg.StaticPartitionsDefinition(["A", "B"]),
                                      "session": dg.StaticPartitionsDefinition([f"2024-01-0{i}" for i in range(1, 6)])})


def _materialize(asset_fn, start: str, end: str) -> dict[str, dict[str, object]]:
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([asset_fn], instance=instance, tags={
        "dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end})
    assert result.success
    out = {}
    for event in result.get_asset_materialization_events():
        m = event.event_specific_data.materialization
        out[str(m.partition)] = {k: v.value for k, v in m.metadata.items()}
    return out


def _entries(context) -> dict[str, dict[str, object]]:
    return {key: {"rank": dg.MetadataValue.int(i), "note": dg.MetadataValue.text(f"partition {key}")}
            for i, key in enumerate(context.partition_keys)}


@dg.asset(partitions_def=PARTS, backfill_policy=dg.BackfillPolicy.single_run(), name="one_call_each")
def one_call_each(context: dg.AssetExecutionContext) -> None:
    for key, meta in _entries(context).items():
        context.add_asset_metadata({"first": dg.MetadataValue.bool(True)}, partition_key=key)
        context.add_asset_metadata(meta, partition_key=key)
    return None


@dg.asset(partitions_def=PARTS, backfill_policy=dg.BackfillPolicy.single_run(), name="one_update")
def one_update(context: dg.AssetExecutionContext) -> None:
    add_partition_metadata(context, context.assets_def.key,
                           {key: {"first": dg.MetadataValue.bool(True)} for key in context.partition_keys})
    add_partition_metadata(context, context.assets_def.key, _entries(context))
    return None


def test_one_update_records_what_a_call_per_partition_records(monkeypatch):
    start, end = "A|2024-01-02", "A|2024-01-04"
    expected = _materialize(one_call_each, start, end)

    def per_call(*args, **kwargs):
        raise AssertionError("add_asset_metadata called: the step's metadata was not updated at once")

    monkeypatch.setattr(dg.AssetExecutionContext, "add_asset_metadata", per_call)
    got = _materialize(one_update, start, end)
    assert len(got) == 3 and got == expected
    assert {k: list(v) for k, v in got.items()} == {k: list(v) for k, v in expected.items()}  # same order
    assert got["A|2024-01-03"]["note"] == "partition A|2024-01-03" and got["A|2024-01-03"]["first"] is True


@dg.asset(partitions_def=PARTS, backfill_policy=dg.BackfillPolicy.single_run(), name="outside_the_run")
def outside_the_run(context: dg.AssetExecutionContext) -> None:
    add_partition_metadata(context, context.assets_def.key, {"B|2024-01-05": {"n": dg.MetadataValue.int(1)}})
    return None


def test_a_partition_outside_the_run_is_refused():
    with pytest.raises(dg.DagsterInvariantViolationError, match=r"B\|2024-01-05.*not being targeted"):
        _materialize(outside_the_run, "A|2024-01-01", "A|2024-01-02")
