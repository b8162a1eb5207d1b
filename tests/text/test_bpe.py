"""CLIP-format BPE training (scenegraph_diff.text.bpe)."""

import pytest

from scenegraph_diff.text.bpe import bytes_to_unicode, clip_tokenizer, clip_words, train_clip_bpe

CORPUS = ["a red circle to the left of a blue square", "a cat sitting on a red sofa",
          "the blue square above a green triangle", "a dog on a cat"] * 5


def test_frequent_words_become_single_tokens_and_ids_follow_clip_order():
    vocab, merges = train_clip_bpe(CORPUS, vocab_size=600)
    chars = list(bytes_to_unicode().values())
    assert [vocab[c] for c in chars[:3]] == [0, 1, 2]
    assert vocab[chars[0] + "</w>"] == 256
    assert list(vocab)[-2:] == ["<|startoftext|>", "<|endoftext|>"]
    assert all(isinstance(m, tuple) and len(m) == 2 for m in merges)
    tok = clip_tokenizer(vocab, merges, model_max_length=16)
    pieces = tok.convert_ids_to_tokens(tok("a red circle left of a blue square").input_ids)
    assert pieces == ["<|startoftext|>", "a</w>", "red</w>", "circle</w>", "left</w>", "of</w>", "a</w>",
                      "blue</w>", "square</w>", "<|endoftext|>"]


def test_unseen_text_still_tokenizes_byte_by_byte_and_round_trips():
    vocab, merges = train_clip_bpe(CORPUS, vocab_size=600)
    tok = clip_tokenizer(vocab, merges, model_max_length=64)
    text = "zebra über ☃"
    ids = tok(text).input_ids
    assert tok.unk_token_id not in ids[1:-1]
    assert tok.decode(ids, skip_special_tokens=True).strip() == text


def test_vocab_size_is_an_upper_bound():
    vocab, merges = train_clip_bpe(CORPUS, vocab_size=520, min_frequency=1)
    assert len(vocab) <= 520 and len(merges) == len(vocab) - 514


def test_save_load_round_trip(tmp_path):
    vocab, merges = train_clip_bpe(CORPUS, vocab_size=600)
    tok = clip_tokenizer(vocab, merges, model_max_length=16)
    tok.save_pretrained(tmp_path)
    from transformers import CLIPTokenizer

    again = CLIPTokenizer.from_pretrained(tmp_path)
    for text in CORPUS[:4] + ["unseen words here"]:
        assert again(text).input_ids == tok(text).input_ids


def test_words_follow_clip_pre_tokenisation():
    assert clip_words("A  Red-circle, 12") == ["a", "red", "-", "circle", ",", "1", "2"]


@pytest.mark.parametrize("bad", [514, 0, 3.5, True])
def test_bad_vocab_size_names_the_value(bad):
    with pytest.raises(ValueError, match="vocab_size"):
        train_clip_bpe(CORPUS, vocab_size=bad)


def test_empty_corpus_is_an_error():
    with pytest.raises(ValueError, match="no words"):
        train_clip_bpe(["", "   "], vocab_size=600)
