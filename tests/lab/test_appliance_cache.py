"""The appliance cache: an entry for the current recipe is reused without building."""

from pathlib import Path

from orchestrator.appliance import recipe
from orchestrator.appliance.build import Appliance, build_appliance, cache_root


def test_a_complete_cache_entry_is_reused_without_building(tmp_path: Path) -> None:
    entry = Appliance(cache_root(tmp_path) / recipe.recipe_hash())
    entry.directory.mkdir(parents=True)
    (entry.directory / "manifest.json").write_text("{}")
    assert build_appliance(cache_dir=tmp_path) == entry.disk
