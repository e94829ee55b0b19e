
import pytest

from videoclf.config import Config, load_config, parse_overrides
from videoclf.errors import ConfigError

from conftest import REPO

SHIPPED = sorted((REPO / "experiments").glob("*.yaml"))


def test_ships_the_three_named_configs():
    assert {p.name for p in SHIPPED} >= {"demo.yaml", "ucf101_top5.yaml", "seed_baseline.yaml"}


def test_shipped_configs_load_by_name_from_any_folder(tmp_path, monkeypatch):
    """Outside the repository `--config demo` (or experiments/demo.yaml, the default) reads the shipped file; a name
    that is nowhere is one error listing what is shipped."""
    from videoclf.config import shipped_configs

    monkeypatch.chdir(tmp_path)
    assert {p.stem for p in SHIPPED} <= set(shipped_configs())
    for name in ("demo", "demo.yaml", "experiments/demo.yaml", None):
        assert load_config(name) == load_config(REPO / "experiments" / "demo.yaml")
    with pytest.raises(ConfigError, match=r"Config file not found: nope .*Shipped configs.*demo.*videoclf init"):
        load_config("nope")


def test_init_copies_a_shipped_config_here_and_never_overwrites(tmp_path):
    from conftest import run_cli

    made = run_cli(["init", "photo_motion"], tmp_path)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "photo_motion.yaml").read_text() == (REPO / "experiments/photo_motion.yaml").read_text()
    again = run_cli(["init", "photo_motion"], tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr


def test_every_package_folder_is_in_the_installed_list():
    """pyproject.toml lists its packages (experiments/ is mapped into one): a new subpackage must be listed too."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "videoclf").rglob("__init__.py")}
    assert listed == folders | {"videoclf.experiments"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    config = load_config(path)
    assert isinstance(config, Config)
    assert max(config.search.seq_length) <= config.sampling.max_seq_length


def test_seed_baseline_is_the_seed_model():
    config = load_config(REPO / "experiments/seed_baseline.yaml")
    space = config.search
    assert space.num_gru_layers == [2] and space.gru_units == [[16], [8]]
    assert space.dropout == [0.4] and space.dense_units == [8] and space.learning_rate == [0.0001]
    assert space.normalize == [False] and config.training.epochs == 10 and config.tuning.max_trials == 1


def test_overrides_are_typed_and_nested():
    assert parse_overrides(["tuning.max_trials=3", "extractor.weights=none"]) == {
        "tuning": {"max_trials": 3}, "extractor": {"weights": "none"}}
    config = load_config(REPO / "experiments/demo.yaml", ["tuning.max_trials=3"])
    assert config.tuning.max_trials == 3


def test_unknown_key_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tuning:\n  max_trails: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(bad) in str(info.value) and "tuning.max_trails" in str(info.value)
    assert "unknown key" in str(info.value)


def test_wrong_type_names_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampling:\n  max_seq_length: twenty\n")
    with pytest.raises(ConfigError, match=r"sampling\.max_seq_length"):
        load_config(bad)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_search_lengths_must_come_from_the_cache(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampling: {max_seq_length: 10}\nsearch: {seq_length: [5, 20]}\n")
    with pytest.raises(ConfigError, match="max_seq_length"):
        load_config(bad)


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_overrides(["tuning.max_trials"])


@pytest.mark.parametrize("overrides, key", [
    (["search.dropout=[1.5]"], "search.dropout"),
    (["search.frame_units=[]"], "search.frame_units"),
    (["search.gru_units=[[]]"], "search.gru_units"),
    (["search.num_gru_layers=[0]"], "search.num_gru_layers"),
    (["search.batch_size=[0]"], "search.batch_size"),
    (["search.family=[lstm]"], "search.family"),
    (["search.inputs=[optical_flow]"], "search.inputs"),
    (["search.pooling=[mean+median]"], "search.pooling"),
    (["tuning.objective=val_f1"], "tuning.objective"),
    (["training.cv_folds=0"], "training.cv_folds"),
    (["tuning.first_trials=[{family: lstm}]"], "first_trials"),
    (["tuning.first_trials=[{depth: 3}]"], "first_trials"),
    (["extractor.precision=int8", "extractor.runtime=tensorflow"], "extractor"),
])
def test_impossible_search_spaces_fail_before_any_run(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(REPO / "experiments/demo.yaml", overrides)


def test_photo_motion_config_generates_its_data_and_searches_every_family():
    config = load_config(REPO / "experiments/photo_motion.yaml")
    assert config.data.photo_motion is not None and config.data.demo is None
    assert set(config.search.family) == {"pooled", "tcn", "gru", "attention"} and "steps" in config.search.inputs
    assert config.training.folds_for(250) == 3 and config.training.folds_for(5000) == 1


def test_motion_streams_and_baseline_need_the_motion_stream():
    with pytest.raises(ConfigError, match=r"motion.enabled: true for search.streams 'motion'"):
        load_config(defaults_only=True, overrides=["search.streams=[appearance, motion]"])
    with pytest.raises(ConfigError, match="motion_logreg") as refused:
        load_config(defaults_only=True, overrides=["tuning.baselines=[motion_logreg]"])
    assert len(str(refused.value).splitlines()) == 2 and "received {" not in str(refused.value)  # not the config
    config = load_config(REPO / "experiments/demo.yaml")  # the shipped configs let the search find motion
    assert config.motion.enabled and "appearance+motion" in config.search.streams
    assert any(t.get("streams") == "motion" for t in config.tuning.first_trials)


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_an_empty_config_file_says_it_is_empty(tmp_path, text):
    empty = tmp_path / "mine.yaml"
    empty.write_text(text)
    with pytest.raises(ConfigError, match=r"mine\.yaml is empty\. Start from one in experiments/"):
        load_config(empty)  # never the built-in defaults, whose ImageNet weights would need the network


def test_a_mistyped_data_root_is_an_error_and_nothing_is_generated_there(tmp_path):
    typo = tmp_path / "my_footgae"
    with pytest.raises(ConfigError, match=r"data\.root .*my_footgae does not exist \(set on the command line; "
                                          r".*demo\.yaml says data/demo\)\. Point it at a folder holding train\.csv"):
        load_config(REPO / "experiments" / "demo.yaml", [f"data.root={typo}"])
    assert not typo.exists()
    typo.mkdir()  # an existing (empty) folder: the demo set may be generated there
    assert load_config(REPO / "experiments" / "demo.yaml", [f"data.root={typo}"]).data.root == typo
