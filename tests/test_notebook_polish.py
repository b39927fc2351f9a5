"""Issue 20, items 6 and the minor ones for notebooks 00-03 and 99: Helm values for the tutorial's own settings, a
refused form is never quietly replaced by its last good value, one error-block format naming the widget, tables that
read well (no cut text, NaN, <NA> or scientific notation), "nothing to remove" instead of empty tables, the download
chart, and what the local target can really offer."""

from __future__ import annotations

import html

import pandas as pd
import pytest
import yaml

from tke_playbook.errors import EmbeddingAPIError, InvalidSpecError, ServerError
from tke_playbook.playbook import Note, nothing_note, open_target, tidy
from tke_playbook.playbook.display import error_html
from tke_playbook.playbook.report import MISSING, readable_number, readable_tables
from tke_playbook.playbook.widgets import DownloadForm, ServingForm, StorageForm
from tke_playbook.specs.catalog import OFFLINE_MODEL
from tke_playbook.specs.download import DownloadSpec
from tke_playbook.specs.serving import seed_profile
from tke_playbook.specs.storage import StorageSpec

# --- item 6: Helm values for the tutorial's own settings ----------------------------------------------------------


def test_helm_values_for_the_defaults_are_values_and_name_the_widget_not_a_cli_flag(pb):
    text = pb.serving.helm_values(pb.serving.defaults())  # the tutorial's public LoadBalancer, as 03 starts
    assert "--service-type" not in text and "--helm-values" not in text and "No values.yaml" not in text
    head = [line for line in text.splitlines() if line.startswith("#")]
    assert any("'Service type'" in line and "ClusterIP" in line for line in head), head
    values = yaml.safe_load(text)
    assert values["server"]["service"]["type"] == "ClusterIP" and values["server"]["apiKey"] == ""
    assert values["model"]["name"] == OFFLINE_MODEL


def test_helm_values_of_a_clusterip_form_carry_no_caveat(pb):
    text = pb.serving.helm_values(pb.serving.defaults().replace(service_type="ClusterIP"))
    assert not text.startswith("#") and yaml.safe_load(text)["server"]["service"]["type"] == "ClusterIP"


# --- a refused form is never replaced by its last good value (01, 02 and 03) ---------------------------------------


def test_01_a_refused_storage_form_stops_the_cells_after_it(pb):
    form = StorageForm(pb.storage.defaults(), pb.storage.names())
    good = pb.read_form(form)
    form.pvc.combo.value = "AI_Model"  # red under the form
    with pytest.raises(InvalidSpecError, match="not a valid Kubernetes name"):
        pb.read_form(form)
    for cell in (pb.storage.render, pb.storage.create):  # `storage_spec` still holds the good spec from before
        with pytest.raises(InvalidSpecError, match="run its spec cell again"):
            cell(good)
    assert pb.storage.names() == []
    form.pvc.combo.value = "models"
    assert pb.storage.create(pb.read_form(form)).loc[0, "pvc"] == "models"


def test_03_a_refused_serving_form_stops_render_and_deploy(pb):
    form = ServingForm(pb.serving.defaults(), ["ai-model"])
    good = pb.read_form(form)
    form.pvc.combo.value = "Other_PVC"
    with pytest.raises(InvalidSpecError):
        pb.read_form(form)
    for cell in (pb.serving.masked_api_key, pb.serving.render, pb.serving.helm_values, pb.serving.deploy):
        with pytest.raises(InvalidSpecError, match="run its spec cell again"):
            cell(good)
    assert pb.running().empty


def test_02_a_refused_download_form_stops_the_plan(pb):
    form = DownloadForm(pb.download.defaults(), None)
    good = pb.read_form(form)
    form.parallelism.value = 9
    with pytest.raises(InvalidSpecError, match="Parallelism 9 is above Completions 3"):
        pb.read_form(form)
    with pytest.raises(InvalidSpecError, match="run its spec cell again"):
        pb.download.plan(good)


# --- 01's form: the zone is named, and an error shows once ---------------------------------------------------------


def _all_html(widget) -> str:
    children = getattr(widget, "children", ())
    own = widget.value if hasattr(widget, "value") and isinstance(widget.value, str) and "<div" in widget.value else ""
    return own + "".join(_all_html(c) for c in children)


def test_01_hint_names_the_zone_and_a_bad_name_is_said_once():
    form = StorageForm(StorageSpec(), ["ai-model"])
    assert "Zone" in html.unescape(form.message.value)
    form.pvc.combo.value = "AI_Model"
    assert _all_html(form).count("not a valid Kubernetes name") == 1
    form.vpc_id.value, form.subnet_id.value = "vpc-2x6fvbq3", "subnet-0b3ydm5e"  # no zone
    form.pvc.combo.value = "ai-model"
    assert "Zone" in html.unescape(form.message.value) and "zone" not in form.problem.split("(")[0].replace(
        "Zone", "")


# --- one error block: always what happened and what to do, in the words of the widgets -----------------------------


@pytest.mark.parametrize("error", [
    EmbeddingAPIError("the server answered 500 at http://127.0.0.1:60000/v1/embeddings: boom"),
    ServerError("The local server at http://127.0.0.1:1 was killed by SIGKILL."),
    InvalidSpecError("tensor_parallel 3 needs 3 GPUs"),
])
def test_every_error_block_says_what_to_do(error):
    assert "<b>What to do:</b>" in error_html(error)


def test_the_public_lb_refusal_names_the_checkbox_not_a_field():
    form = ServingForm(seed_profile())
    form.api_key_required.value = False
    message = html.unescape(form.message.value)
    assert "Require an API key" in message and "api_key_required" not in message
    with pytest.raises(InvalidSpecError) as refused:
        form.spec()
    assert "api_key_required" not in str(refused.value) and "<b>What to do:</b> tick" in error_html(refused.value)


# --- tables ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, shown", [(1234567.891, "1,234,567.9"), (0.000042, "0.000042"), (3.0, "3"),
                                          (12.345, "12.35"), (0.5, "0.50"), (float("nan"), MISSING), (2e-9, "0.0000000020"),
                                          (1e16, "10,000,000,000,000,000.0"),
                                          # 04 showed 16.60 beside 108.9 in one column: the value was 16.6
                                          (16.6, "16.6"), (60.2, "60.2"), (16.599999, "16.6"), (99.5, "99.5")])
def test_numbers_read_without_scientific_notation(value, shown):
    assert readable_number(value) == shown and "e" not in readable_number(value).lower()


def test_tidy_shows_missing_values_as_a_dash_never_nan_or_na():
    frame = pd.DataFrame({"level": [1.0, 2.0, None], "p99_ms": [120.5, float("nan"), 80.25], "note": ["a", None, "c"]})
    shown = tidy(frame).to_html()
    assert "NaN" not in shown and "&lt;NA&gt;" not in shown and "None" not in shown and MISSING in shown


def test_notebook_tables_never_cut_text(pb):
    readable_tables()  # the fixture restores the options afterwards
    shown = pb.site.nodes_table()._repr_html_()
    assert "not verified against Tencent's own docs" in shown.replace("&#x27;", "'") and "..." not in shown
    assert "e+" not in pd.DataFrame({"x": [1e-7, 5e9]})._repr_html_()


def test_a_second_cleanup_says_nothing_to_remove(pb):
    pb.teardown()
    second = nothing_note(pb.teardown(), "Nothing to remove")
    assert isinstance(second, Note) and "Nothing to remove" in second._repr_html_()
    assert isinstance(nothing_note(pd.DataFrame([{"object": "x"}]), "Nothing"), pd.DataFrame)


# --- 02's chart ----------------------------------------------------------------------------------------------------


def test_download_chart_explains_fewer_pods_than_asked_and_stays_readable():
    from tke_playbook.plots import plot_bytes_per_pod
    from tke_playbook.podworker.planner import make_plan, tutorial_plan
    from tke_playbook.podworker.rules import RepoFile

    # all-MiniLM-L6-v2's shape: one 91 MB weights file and a dozen small ones, with the form's maximum of 64 shards
    files = [RepoFile("model.safetensors", 90_868_376)] + [RepoFile(f"file-{i}.json", 1_000) for i in range(12)]
    spec = DownloadSpec(model=OFFLINE_MODEL, source="huggingface", completions=64, parallelism=64)
    ours, theirs = make_plan(spec, files), tutorial_plan(spec, files)
    assert len(ours.shards) == 13 and len(theirs.shards) == 64  # one file or 8 MiB per pod: 13 pods do it
    fig = plot_bytes_per_pod(ours, tutorial=theirs)
    title = fig.axes[0].get_title()
    assert f"ours: {len(ours.shards)} pods, not 64" in title and "8 MiB" in title
    assert fig.get_size_inches()[0] <= 11 and not fig.axes[0].texts  # no 128 overlapping bar labels


# --- what the local target can offer --------------------------------------------------------------------------------


def test_offline_the_pickers_mark_models_that_need_a_hub_and_say_what_huggingface_means(pb):
    unavailable = pb.download.unavailable_models()
    assert OFFLINE_MODEL not in unavailable and "BAAI/bge-m3" in unavailable
    form = DownloadForm(pb.download.defaults(), pb.site.node_type(), unavailable, pb.download.source_note())
    labels = dict((value, label) for label, value in form.picker.dropdown.options)
    assert labels["BAAI/bge-m3"].endswith("needs a hub") and "needs a hub" not in labels[OFFLINE_MODEL]
    assert "packaged copy" in dict(form.rows())["Source"]
    form.picker.dropdown.value = "BAAI/bge-m3"
    assert "fits" not in form.picker.verdict_html.value and "needs a hub" in form.picker.verdict_html.value
    with pytest.raises(InvalidSpecError, match="needs a hub"):
        pb.read_form(form)


def test_locally_03_offers_only_what_is_downloaded(pb):
    unavailable = pb.serving.unavailable_models()
    assert OFFLINE_MODEL in unavailable and "02_download_model" in unavailable[OFFLINE_MODEL]  # nothing downloaded
    form = ServingForm(pb.serving.defaults(), [], pb.site.node_type(), unavailable)
    assert "Valid." not in form.message.value and "02_download_model" in html.unescape(form.message.value)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Offline, as the tests' hubs are; pandas' display options put back after each test."""
    monkeypatch.setenv("TKE_PLAYBOOK_OFFLINE", "1")
    with pd.option_context("display.max_colwidth", pd.get_option("display.max_colwidth"),
                           "display.float_format", pd.get_option("display.float_format")):
        yield


def test_open_target_outside_ipython_leaves_pandas_alone():
    before = pd.get_option("display.max_colwidth")
    open_target("local")
    assert pd.get_option("display.max_colwidth") == before
