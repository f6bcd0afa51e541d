"""raycondi.strategies: the one name table, its scores on hand-made outputs, and everyone reading it."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

from raycondi import strategies
from raycondi.cli import build_parser

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_names_titles_and_rules():
    assert strategies.names() == ("oracle", "random", "equidistant", "max_prob", "bce_conf", "st_ent", "st_conf",
                                  "condi_sr", "dense")
    assert strategies.METHODS == ("bce_conf", "st_ent", "st_conf", "condi_sr")
    assert strategies.LABEL_STRATEGIES == tuple(n for n in strategies.names() if n != "oracle")
    assert strategies.get("condi").name == "condi_sr" and strategies.get("condi_sr").title == "ConDi-SR"
    assert [s.name for s in strategies.STRATEGIES if s.splits] == ["condi_sr"]
    with pytest.raises(ValueError, match="unknown strategy 'condy'; expected one of oracle, random"):
        strategies.get("condy")


def test_clip_scores_hand_computed():
    probs = np.array([[1.0, 0.0], [0.5, 0.5], [0.9, 0.1]])
    confidence = np.array([0.3, 0.8, 0.1])
    np.testing.assert_allclose(strategies.clip_scores("condi_sr", probs, confidence), [0.3, 0.8, 0.1])
    np.testing.assert_allclose(strategies.clip_scores("max_prob", probs, confidence), [1.0, 0.5, 0.9])
    # -H: 0, -ln 2, 0.9 ln 0.9 + 0.1 ln 0.1
    np.testing.assert_allclose(strategies.clip_scores("st_ent", probs, confidence),
                               [0.0, -np.log(2), 0.9 * np.log(0.9) + 0.1 * np.log(0.1)])
    with pytest.raises(ValueError, match="'dense' does not rank clips"):
        strategies.clip_scores("dense", probs, confidence)


def test_the_cli_choices_are_the_table():
    parser = build_parser()
    choices = {}
    for action in parser._subparsers._group_actions[0].choices.values():  # noqa: SLF001 -- argparse has no API
        for option in action._actions:
            if option.dest in ("method", "strategy"):
                choices[(action.prog.split()[-1], option.dest)] = tuple(option.choices)
    assert choices[("distill", "method")] == choices[("tune", "method")] == strategies.METHODS
    assert choices[("label", "strategy")] == (*strategies.LABEL_STRATEGIES, "condi")
    args = parser.parse_args(["label", "--input", "i", "--output", "o", "--teacher", "t"])
    assert args.strategy == "condi_sr"


def test_no_module_spells_the_strategy_list_itself():
    """Every other module reads the table: no tuple or list literal of three or more strategy names."""
    known = set(strategies.names()) | set(strategies.ALIASES)
    offenders = []
    for path in (ROOT / "raycondi").rglob("*.py"):
        if path.name == "strategies.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                names = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in known]
                if len(names) >= 3:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {names}")
    assert offenders == []


def test_readme_table_is_the_table():
    assert strategies.strategies_markdown() in (ROOT / "README.md").read_text()
