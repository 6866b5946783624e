"""ringtrain.config: options, environment twins and the Go thread default."""

import os

import pytest

import ringtrain


@pytest.mark.parametrize("name,kwargs,env,want", [
    ("keyword", {"go_threads": 3}, {}, 3),
    ("twin", {}, {"RINGTRAIN_GO_THREADS": "5"}, "5"),
    ("keyword beats twin", {"go_threads": 2}, {"RINGTRAIN_GO_THREADS": "5"}, 2),
    ("split between local workers", {}, {"LOCAL_WORLD_SIZE": "2"}, max(1, (os.cpu_count() or 1) // 2)),
    ("more workers than CPUs", {}, {"LOCAL_WORLD_SIZE": str(4 * (os.cpu_count() or 1))}, 1),
    ("GOMAXPROCS set by the user wins", {}, {"LOCAL_WORLD_SIZE": "2", "GOMAXPROCS": "7"}, None),
    ("no hint: Go's default", {}, {}, None),
    ("junk hint ignored", {}, {"LOCAL_WORLD_SIZE": "x"}, None),
])
def test_go_threads(monkeypatch, name, kwargs, env, want):
    for k in ("LOCAL_WORLD_SIZE", "GOMAXPROCS", "RINGTRAIN_GO_THREADS"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert ringtrain.config(**kwargs).get("go-threads") == want, name


def test_unknown_option():
    with pytest.raises(ringtrain.InvalidArgument, match="go_thread"):
        ringtrain.config(go_thread=1)


@pytest.mark.parametrize("name,kwargs,env,want", [
    ("keyword", {"lanes": 3}, {}, 3),
    ("twin", {}, {"RINGTRAIN_LANES": "2"}, "2"),
    ("unset", {}, {}, None),
])
def test_lanes(monkeypatch, name, kwargs, env, want):
    monkeypatch.delenv("RINGTRAIN_LANES", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert ringtrain.config(**kwargs).get("lanes") == want, name
