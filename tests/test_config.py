import json

import pytest

from ccyclegan.core.config import Config, ConfigError


def test_defaults_are_the_posters_recipe():
    c = Config()
    assert (c.lr, c.beta1, c.beta2, c.batch_size) == (2e-4, 0.5, 0.999, 64)
    assert (c.lambda_cl, c.lambda_cyc) == (1.0, 1.0)
    assert c.cycle_mode == "reconstruction" and c.adv_loss == "bce"


def test_json_round_trip(tmp_path):
    c = Config(lr=1e-3, adv_loss="lsgan", cycle_mode="cycle")
    c.save(tmp_path / "c.json")
    assert Config.load(tmp_path / "c.json") == c


@pytest.mark.parametrize("field,value", [
    ("lr", "fast"), ("batch_size", 0), ("batch_size", 2.5), ("adv_loss", "wgan"),
    ("flip", "yes"), ("beta1", 1.0), ("lambda_cl", -1.0), ("batch_size", True),
])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        Config(**{field: value})


def test_file_errors_name_file_and_field(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"lr": 1e-3, "gamma": 2}))
    with pytest.raises(ConfigError, match=r"bad\.json.*gamma"):
        Config.load(p)
    p.write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json"):
        Config.load(p)
    p.write_text(json.dumps({"batch_size": "64"}))
    with pytest.raises(ConfigError, match=r"bad\.json.*batch_size"):
        Config.load(p)


def test_int_accepted_for_float():
    assert isinstance(Config(lr=1).lr, float)


def test_recipes_are_valid_configs_and_flags_override_them(tmp_path, tiny_csv):
    from ccyclegan.cli.commands import main
    from ccyclegan.core.config import RECIPES

    for name, recipe in RECIPES.items():
        cfg = Config(**recipe)
        assert all(getattr(cfg, k) == v for k, v in recipe.items()), name
    assert Config(**RECIPES["paper"]).lr == 2e-4 and RECIPES["stargan"]["d_steps_per_g"] == 5
    out = tmp_path / "r"
    assert main(["train", "--data", str(tiny_csv), "--out", str(out), "--recipe", "stargan",
                 "--lambda-cyc", "3", "--gen-channels", "8", "--disc-channels", "8",
                 "--batch-size", "16", "--max-steps", "2", "--threads", "1",
                 "--no-progress"]) == 0
    saved = Config.load(out / "config.json")
    assert saved.adv_loss == "wgan-gp" and saved.cycle_mode == "cycle" and saved.lambda_cyc == 3.0
