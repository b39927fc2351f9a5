"""The clients on vLLM's other pooling routes and wire formats, against the local server (the real MiniLM, served
with ``--hf-overrides '{"matryoshka_dimensions": [...]}'``): ``dimensions``, every ``embed_dtype`` over base64,
bytes and bytes_only, ``/rerank``, ``/score`` and Cohere's ``/v2/embed``, variants, and errors mapped as the
embeddings errors are.

Expectations come from upstream, never from the server: vectors from sentence-transformers itself, each
``embed_dtype`` as torch casts it (what vLLM's ``tensor2binary`` does), binary types from sentence-transformers'
``quantize_embeddings`` (whose ``> 0`` and vLLM's ``>= 0`` agree off zero), scores from ``util.cos_sim``."""

from __future__ import annotations

import asyncio
import base64
import json
import os

import numpy as np
import pytest
import torch

from tke_playbook.embed import api
from tke_playbook.embed.http import AsyncEmbeddingClient, EmbeddingClient
from tke_playbook.errors import AuthenticationError, BadRequestError, EmbeddingAPIError, InvalidSpecError
from tke_playbook.localserver import start_server
from tke_playbook.hostenv import offline_model_dir

KEY = "pooling-client-key"
DIMS = (64, 128, 256)
TEXTS = ["The cluster serves embeddings.", "A GPU node runs vLLM.", "Bananas are yellow.", "如何申请 GPU？"]
QUERY = "Which node runs the model on a GPU?"
TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
         "fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("pooling-client") / "server.log"
    with start_server(api_key=KEY, timeout=240, log_path=log,
                      hf_overrides={"matryoshka_dimensions": list(DIMS)}) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with EmbeddingClient(server.url, api_key=KEY) as c:
        yield c


@pytest.fixture(scope="module")
def st():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(offline_model_dir()), device="cpu")


def truncated(vectors: np.ndarray, dims: int | None) -> np.ndarray:
    """vLLM's Matryoshka rule: the first ``dims`` values, normalised again."""
    cut = vectors[:, :dims] if dims else vectors
    return cut / np.linalg.norm(cut, axis=1, keepdims=True)


def as_cast(vectors: np.ndarray, dtype: str) -> np.ndarray:
    """What vLLM sends for ``dtype``: torch's cast of the float32 vector, read back as float32."""
    return torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(TORCH[dtype]).float().numpy()


# --- decoding every embed_dtype as vLLM encodes it (no server) ------------------------------------------------


@pytest.mark.parametrize("dtype", list(TORCH))
@pytest.mark.parametrize("endianness", ["little", "big"])
def test_every_embed_dtype_decodes_as_torch_casts_it(dtype, endianness):
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal(500) * 0.05, [0.0, -0.0, 1e-9, 3e-3, 0.999, -1.0, 200.0]])
    cast = torch.from_numpy(values.astype(np.float32)).to(TORCH[dtype])
    raw = cast.view({1: torch.uint8, 2: torch.int16, 4: torch.int32}[cast.element_size()]).numpy()
    if endianness == "big" and raw.dtype.itemsize > 1:
        raw = raw.byteswap()
    decoded = api.decode_values(raw.tobytes(), dtype, endianness)
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, cast.float().numpy())


def test_every_fp8_e4m3_code_decodes_as_torch_reads_it():
    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    expected = codes.view(torch.float8_e4m3fn).float().numpy()
    np.testing.assert_array_equal(api.decode_values(codes.numpy().tobytes(), "fp8_e4m3"), expected)  # NaN == NaN


def test_options_refuse_what_vllm_would_not_apply():
    with pytest.raises(InvalidSpecError, match="shapes base64 and bytes answers only"):
        api.EmbedOptions("float", embed_dtype="fp8_e4m3")
    with pytest.raises(InvalidSpecError, match="embed_dtype='int8'"):
        api.EmbedOptions("base64", embed_dtype="int8")
    with pytest.raises(InvalidSpecError, match="dimensions=0"):
        api.EmbedOptions("float", dimensions=0)
    with pytest.raises(InvalidSpecError, match="precision='int4'"):
        EmbeddingClient("http://127.0.0.1:1", precision="int4")


def test_a_bytes_answer_in_another_dtype_than_asked_is_refused():
    """A server that ignores embed_dtype (vLLM before it existed) would otherwise be decoded as garbage."""
    metadata = json.dumps({"data": [{"index": 0, "embed_dtype": "float32", "endianness": "native", "start": 0,
                                     "end": 8, "shape": [2]}], "usage": {"prompt_tokens": 3}})
    with pytest.raises(EmbeddingAPIError, match="does not apply embed_dtype"):
        api.parse_bytes_embeddings(np.ones(2, "<f4").tobytes(), metadata, 1, api.EmbedOptions("bytes",
                                                                                               embed_dtype="float16"))


# --- /v1/embeddings: dimensions and embed_dtype as the server applies them -----------------------------------


@pytest.mark.parametrize("dtype", list(TORCH))
@pytest.mark.parametrize("encoding", ["base64", "bytes", "bytes_only"])
def test_embed_dtype_comes_back_as_the_server_cast_it(client, st, dtype, encoding):
    reference = truncated(st.encode(TEXTS), 128)
    got = client.embed(TEXTS, encoding_format=encoding, embed_dtype=dtype, dimensions=128)
    assert got.shape == (len(TEXTS), 128)
    np.testing.assert_allclose(got, as_cast(reference, dtype), atol=1e-6, rtol=0)
    if encoding != "bytes_only":
        assert client.last_prompt_tokens == sum(len(ids) for ids in st.tokenizer(TEXTS)["input_ids"])


def test_the_openai_client_sends_what_ours_decodes(server, client):
    """The official client with vLLM's extra fields: its base64 answer, read as float16, is ours."""
    import openai

    official = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60)
    answer = official.embeddings.with_raw_response.create(
        model=client.models()[0], input=TEXTS[:2], encoding_format="base64", dimensions=64,
        extra_body={"embed_dtype": "float16"})
    rows = [np.frombuffer(base64.b64decode(d["embedding"]), "<f2") for d in json.loads(answer.content)["data"]]
    np.testing.assert_array_equal(np.stack(rows).astype(np.float32),
                                  client.embed(TEXTS[:2], encoding_format="base64", embed_dtype="float16",
                                               dimensions=64))


@pytest.mark.parametrize("precision", [*TORCH, "binary", "ubinary"])
def test_a_variant_is_an_embedder_of_the_servers_own_vectors(client, st, precision):
    from sentence_transformers.util.quantization import quantize_embeddings

    variant = client.variant(dimensions=64, precision=precision)
    assert variant.name == f"{client.models()[0]}@64d-{precision}" and variant.model == client.model
    assert "pooling-client-key" not in repr(variant)
    got = variant.embed_documents(TEXTS)
    reference = truncated(st.encode(TEXTS), 64)
    if precision in TORCH:
        np.testing.assert_allclose(got, as_cast(reference, precision), atol=1e-6, rtol=0)
    else:  # +1 where sentence-transformers sets the bit, -1 elsewhere
        bits = np.unpackbits(quantize_embeddings(reference, precision="ubinary"), axis=1)
        np.testing.assert_array_equal(got, bits * 2.0 - 1.0)


def test_async_variants_and_rerank_answer_as_the_sync_ones(server, client):
    async def go():
        async with AsyncEmbeddingClient(server.url, api_key=KEY, max_batch_size=2) as async_client:
            vectors = await async_client.variant(dimensions=128, precision="fp8_e5m2").embed(TEXTS)
            bits = await async_client.variant(precision="ubinary").embed(TEXTS)
            ranked = await async_client.rerank(QUERY, TEXTS, top_n=3)
            return vectors, bits, ranked

    vectors, bits, ranked = asyncio.run(go())
    np.testing.assert_array_equal(vectors, client.variant(dimensions=128, precision="fp8_e5m2").embed(TEXTS))
    np.testing.assert_array_equal(bits, client.variant(precision="ubinary").embed(TEXTS))
    whole = client.rerank(QUERY, TEXTS, top_n=3)  # one request: the query is counted once, not once per request
    assert ranked.order == whole.order and np.allclose(ranked.scores, whole.scores, atol=1e-6)


# --- /rerank and /score ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", api.RERANK_PATHS)
def test_rerank_ranks_by_the_cosine_of_the_pooled_vectors(client, st, path):
    from sentence_transformers.util import cos_sim

    expected = cos_sim(st.encode([QUERY]), st.encode(TEXTS))[0].numpy()
    ranked = client.rerank(QUERY, TEXTS, top_n=2, path=path)
    assert list(ranked.order) == list(np.argsort(-expected)[:2])
    np.testing.assert_allclose(ranked.scores, np.sort(expected)[::-1][:2], atol=1e-5)
    table = ranked.to_frame()
    assert list(table["document"]) == [TEXTS[i] for i in ranked.order] and list(table.index) == [1, 2]
    assert np.isnan(ranked.by_index()).sum() == len(TEXTS) - 2


def test_rerank_over_several_requests_ranks_as_one(server, client):
    with EmbeddingClient(server.url, api_key=KEY, max_batch_size=3) as small:
        split = small.rerank(QUERY, TEXTS * 2, top_n=5)
    whole = client.rerank(QUERY, TEXTS * 2, top_n=5)
    assert split.order == whole.order and np.allclose(split.scores, whole.scores, atol=1e-6)


def test_score_one_to_many_and_pair_by_pair(client, st):
    from sentence_transformers.util import cos_sim, pairwise_cos_sim

    one_to_many = client.score(QUERY, TEXTS)
    np.testing.assert_allclose(one_to_many, cos_sim(st.encode([QUERY]), st.encode(TEXTS))[0].numpy(), atol=1e-5)
    pairs = client.score(TEXTS, TEXTS[::-1])
    np.testing.assert_allclose(pairs, pairwise_cos_sim(st.encode(TEXTS), st.encode(TEXTS[::-1])).numpy(),
                               atol=1e-5)
    with pytest.raises(InvalidSpecError, match="3 queries for 4 documents"):
        client.score(TEXTS[:3], TEXTS)


# --- Cohere /v2/embed ------------------------------------------------------------------------------------------


def test_cohere_embed_gives_each_type_as_sentence_transformers_quantises(client, st):
    from sentence_transformers.util.quantization import quantize_embeddings

    typed = client.cohere_embed(TEXTS, ("float", "binary", "ubinary", "base64"), output_dimension=128)
    reference = truncated(st.encode(TEXTS), 128)
    np.testing.assert_allclose(typed["float"], reference, atol=1e-5)
    np.testing.assert_allclose(typed["base64"], reference, atol=1e-5)
    assert typed["binary"].dtype == np.int8 and typed["ubinary"].dtype == np.uint8
    np.testing.assert_array_equal(typed["binary"], quantize_embeddings(reference, precision="binary"))
    np.testing.assert_array_equal(typed["ubinary"], quantize_embeddings(reference, precision="ubinary"))


# --- errors, mapped as the embeddings errors are ---------------------------------------------------------------


def test_errors_on_the_new_routes_are_the_toolkits(server, client):
    with pytest.raises(BadRequestError, match="input_type 'search_query'"):
        client.cohere_embed(TEXTS, input_type="search_query")  # MiniLM defines no task instructions (vLLM's 400)
    with pytest.raises(BadRequestError, match="only supports"):
        client.embed(TEXTS, dimensions=100)
    with pytest.raises(EmbeddingAPIError, match="does not exist") as unknown:
        EmbeddingClient(server.url, "nope", KEY, retries=0).rerank(QUERY, TEXTS)
    assert unknown.value.status == 404
    with pytest.raises(AuthenticationError):
        EmbeddingClient(server.url, api_key="wrong", retries=0).rerank(QUERY, TEXTS, path="/v1/rerank")
    with pytest.raises(InvalidSpecError, match="rerank path"):
        client.rerank(QUERY, TEXTS, path="/rank")
    with pytest.raises(InvalidSpecError, match="top_n=-1"):
        client.rerank(QUERY, TEXTS, top_n=-1)
    with pytest.raises(InvalidSpecError, match="embedding_types='int8'"):
        client.cohere_embed(TEXTS, ("int8",))


def test_a_route_the_server_lacks_is_named_as_such():
    error = api.error_for(404, {"detail": "Not Found"}, "http://h:1/v2/embed")
    assert "has no such route" in str(error) and "v2/embed" in str(error)
    model_error = api.error_for(404, {"error": {"message": "The model `x` does not exist."}}, "http://h:1/rerank")
    assert "served model name" in str(model_error)


def test_the_clients_wire_choices_are_vllms():
    """vLLM 0.34.0 (utils/serial_utils.py, pooling/embed/protocol.py; reference facts 10a)."""
    assert api.EMBED_DTYPES == ("float32", "float16", "bfloat16", "fp8_e4m3", "fp8_e5m2")
    assert api.ENDIANNESS == ("native", "big", "little")
    assert api.COHERE_TYPES == ("float", "binary", "ubinary", "base64")
    assert api.ENCODING_FORMATS == ("float", "base64", "bytes", "bytes_only")
