"""Dataset page, Evaluate section: labels, k and methods, the run button, table and chart."""

from __future__ import annotations

from imgrec import Index
from imgrec.app.evaluation import labels_spec, summary_frame
from imgrec.app.state import Key
from imgrec.insights.evaluate import evaluate

METHODS = ["embedding:cosine", "color"]


def test_evaluate_section_runs_the_chosen_methods_and_shows_table_and_chart(make_app,
                                                                            tiny_index):
    at = make_app(tiny_index)
    at.run()
    at.switch_page("imgrec/app/pages/dataset.py").run()
    assert not at.exception
    assert any("press Evaluate" in c.value for c in at.caption)  # nothing run yet
    at.number_input(key=Key.EVAL_K).set_value(3)
    at.multiselect(key=Key.EVAL_METHODS).set_value(METHODS)
    at.button(key=Key.EVAL_RUN).click().run(timeout=300)
    assert not at.exception
    want = evaluate(Index.open(tiny_index), labels="folder", ks=(3,), methods=METHODS)
    shown = at.dataframe[-1].value
    assert shown.equals(summary_frame(want))  # exactly what the API measures
    assert list(shown["method"]) == [m + (" (best)" if m == want.best else "") for m in METHODS]
    assert f"{want.value('embedding:cosine', 'precision', 3):.3f}" in shown["P@3"][0]
    assert any(f"Best here: `{want.best}`" in m.value for m in at.markdown)
    chart = [c for c in at.get("plotly_chart")]
    assert chart and "Retrieval quality by method (labels: folder)" in chart[0].proto.spec
    at.radio(key=Key.EVAL_LABELS).set_value("depth").run()  # another question: asked again
    assert any("press Evaluate" in c.value for c in at.caption)
    at.number_input(key=Key.EVAL_DEPTH).set_value(1)
    at.multiselect(key=Key.EVAL_METHODS).set_value(["color"])
    at.button(key=Key.EVAL_RUN).click().run(timeout=300)
    assert not at.exception
    top = evaluate(Index.open(tiny_index), labels="depth:1", ks=(3,), methods=["color"])
    assert at.dataframe[-1].value.equals(summary_frame(top))


def test_labels_spec_names_the_folder_or_the_depth():
    assert labels_spec("folder", 3) == "folder"
    assert labels_spec("depth", 2) == "depth:2"
