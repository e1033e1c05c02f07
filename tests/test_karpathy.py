"""Flickr30K / COCO on the Karpathy split: the real file format and real JPEG images, written by
the test; the experiment file runs end to end (--fast) on them; broken split files are one line."""
from __future__ import annotations

import json

import pytest
import torch

from distill.cli import main
from distill.data.karpathy import flickr30k
from distill.errors import UserError
from dataset_files import write_karpathy


def test_the_loader_reads_pairs_images_and_relevance(tmp_path):
    write_karpathy(tmp_path, images=12, per_image=3)
    splits = flickr30k(root=str(tmp_path), image_size=32)
    assert len(splits.train) == 8 * 3 and len(splits.test) == 4
    (image, tokens), key = splits.train[4]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert int(key) == 1  # caption 4 belongs to image 1
    # a caption is relevant to its own image only
    assert splits.kind.text_keys.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert splits.vocab_size > 10 and tokens[0] > 1


@pytest.mark.parametrize("damage,words", [
    (lambda root: (root / "dataset_flickr30k.json").unlink(), "split file"),
    (lambda root: (root / "images" / "0003.jpg").unlink(), "1 of the split file's 12 images are missing"),
    (lambda root: (root / "dataset_flickr30k.json").write_text("{not json"), "not a Karpathy split file"),
    (lambda root: (root / "dataset_flickr30k.json").write_text(json.dumps(
        {"images": [{"filename": "0000.jpg", "split": "train", "sentences": []}]})), "has no captions"),
])
def test_a_broken_split_is_one_clear_error(tmp_path, damage, words):
    write_karpathy(tmp_path)
    damage(tmp_path)
    with pytest.raises(UserError, match=words):
        flickr30k(root=str(tmp_path), image_size=32)


def test_the_flickr30k_file_validates_and_runs_fast_on_a_tiny_split(tmp_path, capsys):
    root = tmp_path / "f30k"
    write_karpathy(root, images=24, per_image=5)
    sets = ["--set", f"data.root={root}", "--set", "data.image_size=32", "--set",
            "data.num_workers=0", "--set", "data.batch_size=16", "--set", "threads=1",
            "--set", "objectives.1.candidates=8", "--set", "objectives.1.hard_negatives=3"]
    assert main(["validate", "experiments/dcd_flickr30k.yaml", *sets]) == 0, \
        capsys.readouterr().err
    out = tmp_path / "runs"
    assert main(["run", "experiments/dcd_flickr30k.yaml", "--out", str(out), "--fast",
                 "--variant", "dcd", *sets]) == 0, capsys.readouterr().err
    metrics = json.loads((out / "_fast" / "dcd_flickr30k" / "dcd" / "seed0" / "metrics.json")
                         .read_text())
    assert {"i2t_r1", "t2i_r10", "rsum", "latency_i2t_us"} <= set(metrics)


def test_missing_images_are_one_line_at_validate(tmp_path, capsys):
    root = tmp_path / "f30k"
    write_karpathy(root)
    (root / "images" / "0001.jpg").unlink()
    assert main(["validate", "experiments/dcd_flickr30k.yaml", "--set", f"data.root={root}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "data.root" in lines[0] and "missing" in lines[0], lines


def write_tiny_bert(folder):
    """A tiny BERT and its WordPiece tokenizer, built from a config and saved like a downloaded
    model (nothing is downloaded)."""
    transformers = pytest.importorskip("transformers")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "green", "blue", "yellow",
             "picture", "number", "seen", "times", "."] + [str(i) for i in range(30)]
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(words))
    transformers.BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


def test_a_hugging_face_text_encoder_from_a_local_folder(tmp_path, capsys):
    bert = write_tiny_bert(tmp_path / "bert")
    root = tmp_path / "f30k"
    write_karpathy(root, images=24, per_image=5)
    splits = flickr30k(root=str(root), image_size=32, tokenizer=str(bert), text_length=12)
    (_, tokens), _ = splits.train[0]
    assert tokens[0] == 2 and 3 in tokens.tolist()  # [CLS] ... [SEP], BERT's ids
    sets = ["--set", f"data.root={root}", "--set", "data.image_size=32", "--set",
            "data.num_workers=0", "--set", "data.batch_size=16", "--set", "threads=1",
            "--set", f"data.tokenizer={bert}", "--set", f"student.net.text={bert}",
            "--set", f"teacher.net.text={bert}", "--set", "objectives.1.candidates=8",
            "--set", "objectives.1.hard_negatives=3"]
    out = tmp_path / "runs"
    assert main(["run", "experiments/dcd_flickr30k.yaml", "--out", str(out), "--fast",
                 "--variant", "dcd", *sets]) == 0, capsys.readouterr().err
    state = torch.load(out / "_fast" / "dcd_flickr30k" / "dcd" / "seed0" / "checkpoints" /
                       "last.ckpt", weights_only=True)["state_dict"]
    assert any("text.model.encoder" in k for k in state)  # the BERT is the student's text side


def test_a_text_folder_that_is_not_a_model_is_one_line(tmp_path, capsys):
    root = tmp_path / "f30k"
    write_karpathy(root)
    assert main(["validate", "experiments/dcd_flickr30k.yaml", "--set", f"data.root={root}",
                 "--set", f"data.tokenizer={tmp_path}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "data.tokenizer" in lines[0] and "config.json" in lines[0], lines
