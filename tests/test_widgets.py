"""The notebook widgets: built from the catalog, valid by default, reading back into typed values and specs."""

from __future__ import annotations

import html

import ipywidgets as w
import pytest

from tke_playbook.errors import FitError, InvalidSpecError
from tke_playbook.playbook.widgets import (DownloadForm, ModelPicker, NodeTypePicker, PvcPicker, ServingForm, TextForm,
                                           text_px)
from tke_playbook.specs import DownloadSpec
from tke_playbook.specs.catalog import OFFLINE_MODEL, TUTORIAL_MODEL
from tke_playbook.specs.hardware import NODE_TYPES, get_node_type
from tke_playbook.specs.serving import ServingSpec, seed_profile


def test_node_type_picker_defaults_to_the_tutorial_gpu_node():
    picker = NodeTypePicker(NODE_TYPES)
    assert picker.node_type.name == "PNV5b.8XLARGE96"
    assert all(get_node_type(name).gpu for _, name in picker.dropdown.options)  # CPU download nodes left out


def test_node_type_picker_honours_a_given_default_and_ignores_an_unknown_one():
    assert NodeTypePicker(NODE_TYPES, default="GN7.2XLARGE32").node_type.name == "GN7.2XLARGE32"
    assert NodeTypePicker(NODE_TYPES, default="nope").node_type.name == "PNV5b.8XLARGE96"


def test_node_type_picker_without_nodes_says_what_to_do():
    with pytest.raises(InvalidSpecError, match="GPU node pool"):
        NodeTypePicker([])


def test_pvc_picker_accepts_new_names_and_explains_bad_ones():
    picker = PvcPicker(["models"], default="ai-model")
    assert picker.pvc_name == "ai-model" and set(picker.combo.options) == {"models", "ai-model"}
    picker.combo.value = "AI_Model"
    assert "not a valid Kubernetes name" in picker.message.value
    with pytest.raises(InvalidSpecError):
        picker.pvc_name


def test_model_picker_shows_the_fit_verdict_and_follows_the_choice():
    picker = ModelPicker(TUTORIAL_MODEL, get_node_type("PNV5b.8XLARGE96"))
    assert picker.verdict.fits and "fits on 1 × L20" in picker.verdict_html.value
    small = ModelPicker(TUTORIAL_MODEL, get_node_type("GN7.2XLARGE32"))  # one 16 GB T4
    assert not small.verdict.fits and "Does not fit" in small.verdict_html.value
    small.dropdown.value = "BAAI/bge-small-en-v1.5"
    assert small.model == "BAAI/bge-small-en-v1.5" and small.verdict.fits


def test_model_picker_without_a_node_skips_the_check():
    picker = ModelPicker(OFFLINE_MODEL, None)
    assert picker.verdict is None and "skipped" in picker.verdict_html.value


def test_download_form_defaults_give_the_defaults_back():
    defaults = DownloadSpec(model=OFFLINE_MODEL, source="huggingface", completions=3, parallelism=3)
    form = DownloadForm(defaults, get_node_type("PNV5b.8XLARGE96"))
    assert form.spec() == defaults and form.message.value == ""


def test_download_form_reads_changes_and_reports_bad_ones():
    form = DownloadForm(DownloadSpec(model=OFFLINE_MODEL), None)
    form.source.value = "huggingface"
    form.completions.value = 4
    spec = form.spec()
    assert spec.source.value == "huggingface" and spec.completions == 4 and spec.revision == "main"
    form.parallelism.value = 6
    assert "Parallelism 6 is above Completions 4" in form.message.value
    with pytest.raises(InvalidSpecError):
        form.spec()


def test_serving_form_prefilled_from_the_seed_profile_round_trips():
    form = ServingForm(seed_profile(), ["ai-model"])
    assert form.spec() == seed_profile() and "Valid." in form.message.value


def test_serving_form_model_change_rederives_names_and_checks_limits():
    defaults = seed_profile().replace(model=OFFLINE_MODEL, max_model_len=256)
    form = ServingForm(defaults)
    form.model.dropdown.value = "BAAI/bge-m3"
    form.tp_size.value = 2
    spec = form.spec()
    assert isinstance(spec, ServingSpec) and spec.name == "vllm-bge-m3" and spec.api_key_secret == "vllm-bge-m3-api-key"
    assert spec.tp_size == 2 and spec.gpu_count == 2
    form.model.dropdown.value = OFFLINE_MODEL
    form.max_model_len.value = 5000
    assert "limit of 256 tokens" in form.message.value


def test_serving_form_refuses_a_public_balancer_without_a_key():
    form = ServingForm(seed_profile())
    form.api_key_required.value = False
    assert "anyone on the internet" in form.message.value


def test_text_form_blank_input_is_an_error_not_the_default_sentence():
    form = TextForm("Sentence", "用Python实现快速排序算法")
    assert form.text == "用Python实现快速排序算法" and form.message.value == ""
    form.area.value = "   "
    with pytest.raises(InvalidSpecError, match="empty: type a sentence"):
        form.text
    assert "type a sentence" in form.message.value  # said under the box as you type
    form.area.value = "  向量数据库 "
    assert form.text == "向量数据库" and form.message.value == ""
    with pytest.raises(InvalidSpecError):
        TextForm("Sentence", " ")


def test_serving_form_max_model_len_follows_a_model_change():
    form = ServingForm(seed_profile().replace(model=OFFLINE_MODEL, max_model_len=256))
    form.model.dropdown.value = "BAAI/bge-m3"  # limit 8192: starts from the tutorial's 2048
    assert form.max_model_len.value == 2048 and form.spec().max_model_len == 2048
    form.model.dropdown.value = OFFLINE_MODEL  # limit 256
    assert form.max_model_len.value == 256 and form.spec().max_model_len == 256 and "Valid." in form.message.value


def test_fit_verdict_states_the_headroom_once():
    for node in ("PNV5b.8XLARGE96", "GN7.2XLARGE32"):
        verdict_html = ModelPicker(TUTORIAL_MODEL, get_node_type(node)).verdict_html.value
        spare = ModelPicker(TUTORIAL_MODEL, get_node_type(node)).verdict
        shown = f"{spare.headroom_bytes / 2**30:.1f} GiB"
        assert verdict_html.count(shown) <= 1 and verdict_html.count("headroom") <= 1, verdict_html


def _forms():
    node = get_node_type("PNV5b.8XLARGE96")
    return [NodeTypePicker(NODE_TYPES), PvcPicker(["models"]), DownloadForm(DownloadSpec(model=OFFLINE_MODEL), node),
            ServingForm(seed_profile(), ["ai-model"], node), TextForm("Sentence to embed", "用Python实现快速排序算法")]


def _leaves(widget):
    children = getattr(widget, "children", ())
    return [widget] if not children else [leaf for child in children for leaf in _leaves(child)]


def test_labels_and_choices_are_wide_enough_to_show_in_full():
    """Nothing is cut to "maxBatchSize (max-nu…": each label fits its label column, each dropdown its longest
    choice (the browser suite measures the rendered page as well)."""
    for form in _forms():
        for leaf in _leaves(form):
            if not getattr(leaf, "description", "") or isinstance(leaf, w.Checkbox):
                continue
            label = int(leaf.style.description_width.removesuffix("px"))
            assert text_px(leaf.description) <= label, leaf.description
            width = int(leaf.layout.width.removesuffix("px"))
            labels = [o[0] if isinstance(o, tuple) else o for o in getattr(leaf, "options", ())]
            assert all(text_px(text) + 30 <= width - label for text in labels), (leaf.description, labels)


# --- what an exported notebook shows: a static copy of each widget -------------------------------------------


@pytest.mark.parametrize("make, expected", [
    pytest.param(lambda: NodeTypePicker(NODE_TYPES), ["GPU node type", "PNV5b.8XLARGE96 (1 × L20"], id="node-type"),
    pytest.param(lambda: PvcPicker([], default="models"), ["PVC", "models"], id="pvc"),
    pytest.param(lambda: ModelPicker(TUTORIAL_MODEL, get_node_type("PNV5b.8XLARGE96")),
                 [TUTORIAL_MODEL, "fits on 1 × L20"], id="model"),
    pytest.param(lambda: DownloadForm(DownloadSpec(model=OFFLINE_MODEL, source="huggingface")),
                 ["Source", "huggingface", "Completions (shards)", "valid"], id="download"),
    pytest.param(lambda: ServingForm(seed_profile()), ["max_model_len", "2048", "LoadBalancer", "valid"],
                 id="serving"),
    pytest.param(lambda: TextForm("Sentence", "用Python实现快速排序算法"), ["用Python实现快速排序算法"], id="text"),
])
def test_each_widget_also_renders_as_a_static_table(make, expected):
    widget = make()
    bundle = widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # live in JupyterLab
    static = bundle["text/html"]
    assert static.startswith("<table") and all(text in static for text in expected), static
    assert len(repr(widget)) < 700 and "Layout(" not in repr(widget)


def test_static_copy_follows_changes_and_shows_problems_escaped():
    form = ServingForm(seed_profile())
    form.max_batch_size.value = 64
    assert "<td style=\"text-align:left\">64</td>" in form._repr_mimebundle_()["text/html"]
    text = TextForm("Sentence", "a <b>bold</b> claim")
    assert "&lt;b&gt;bold&lt;/b&gt;" in text._repr_mimebundle_()["text/html"]
    download = DownloadForm(DownloadSpec(model=OFFLINE_MODEL, source="huggingface", completions=2, parallelism=2))
    download.parallelism.value = 5
    assert "above Completions" in download._repr_mimebundle_()["text/html"]


def test_serving_form_fit_verdict_follows_the_form_and_refuses_what_cannot_run():
    """Issue 20 item 7: what cannot run on the chosen node is refused in one red line, never "Valid."."""
    form = ServingForm(seed_profile(), ["ai-model"], get_node_type("GN7.2XLARGE32"))  # one 16 GB T4
    message = html.unescape(form.message.value)
    assert "Does not fit" in message and "Valid." not in message and form.model.verdict_html.value == ""
    assert "Does not fit" in form._repr_mimebundle_()["text/html"]
    with pytest.raises(FitError):
        form.spec()
    form.model.dropdown.value = "BAAI/bge-m3"
    assert form.model.verdict.fits and "fits on 1 × T4" in form.model.verdict_html.value
    assert "Valid." in form.message.value and "Each pod gets 1 GPU on GN7.2XLARGE32" in form.message.value
    form.tp_size.value = 2  # the node has one GPU
    message = html.unescape(form.message.value)
    assert "needs 2 GPUs" in message and "GN7.2XLARGE32 has 1" in message and "Valid." not in message
    assert "tpSize" in message and "tp_size" not in message  # names the box the user sees
    with pytest.raises(InvalidSpecError, match="needs 2 GPUs"):
        form.spec()


def test_serving_form_without_a_node_type_hides_the_verdict():
    form = ServingForm(seed_profile())
    assert form.model.verdict_html.layout.display == "none" and "GPU fit" not in form._repr_mimebundle_()["text/html"]


def test_storage_form_reads_vpc_subnet_and_zone_into_the_spec():
    from tke_playbook.playbook.widgets import StorageForm
    from tke_playbook.specs.storage import StorageSpec

    form = StorageForm(StorageSpec(), ["ai-model"])
    assert form.spec() == StorageSpec() and "must exist" in form.message.value
    form.vpc_id.value, form.subnet_id.value, form.zone.value = "vpc-2x6fvbq3", "subnet-0b3ydm5e", "ap-guangzhou-3"
    spec = form.spec()
    assert (spec.vpc_id, spec.subnet_id, spec.zone) == ("vpc-2x6fvbq3", "subnet-0b3ydm5e", "ap-guangzhou-3")
    assert spec.creates_storage_class and "creates StorageClass &#x27;cfs&#x27;" in form.message.value
    form.subnet_id.value = ""
    assert "Subnet ID" in form.problem and form.problem in html.unescape(form.message.value)
    with pytest.raises(InvalidSpecError):
        form.spec()


def test_storage_form_shows_the_cfs_storage_class_with_placeholders_until_given():
    """01 shows the tutorial's StorageClass itself (facts.md: provisioner com.tencent.cloud.csi.cfs, parameters vpcid,
    subnetid, zone, vers "3"), never only a comment."""
    import yaml

    from tke_playbook.playbook.widgets import StorageForm
    from tke_playbook.specs.storage import StorageSpec

    form = StorageForm(StorageSpec())
    preview = form.storage_class_preview()
    assert preview.startswith("# Placeholders: give vpc_id, subnet_id, zone")
    manifest = yaml.safe_load(preview)
    assert manifest["kind"] == "StorageClass" and manifest["provisioner"] == "com.tencent.cloud.csi.cfs"
    assert manifest["parameters"]["vpcid"].startswith("<vpc-") and manifest["parameters"]["vers"] == "3"
    form.vpc_id.value, form.subnet_id.value, form.zone.value = "vpc-2x6fvbq3", "subnet-0b3ydm5e", "ap-guangzhou-3"
    manifest = yaml.safe_load(form.storage_class_preview())
    assert {k: manifest["parameters"][k] for k in ("vpcid", "subnetid", "zone")} == {
        "vpcid": "vpc-2x6fvbq3", "subnetid": "subnet-0b3ydm5e", "zone": "ap-guangzhou-3"}
    assert not form.storage_class_preview().startswith("#")


def test_serving_form_offers_a_multi_node_group_like_render_nodes():
    """Issue 10 item 9: the widget, like `render --nodes N`, sets the chart's lwsGroupSize."""
    form = ServingForm(seed_profile(), ["ai-model"])
    form.tp_size.value, form.nodes.value = 2, 2
    spec = form.spec()
    assert spec.lws_group_size == 2 and spec.is_multi_node and spec.gpu_count == 1
    form.nodes.value = 1
    assert form.spec().lws_group_size == 1 and not form.spec().is_multi_node
