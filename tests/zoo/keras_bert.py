"""Keras models shaped like MLPerf's TensorFlow entries, tiny and seeded: EfficientNetB0 (its
Normalization layer keeps mean and variance as variables) and a keras_hub-style BERT backbone
built by hand (keras_hub itself would replace the installed tensorflow-cpu with tensorflow): a
dict of ``token_ids`` / ``segment_ids`` / ``padding_mask`` in, a dict of ``sequence_output`` /
``pooled_output`` out, one transformer layer, hidden 32."""

from __future__ import annotations

from pathlib import Path

VOCAB, SEQ, HIDDEN = 100, 16, 32


def efficientnet_b0(path: Path) -> Path:
    import keras

    from keras_models import _randomize_batchnorm

    keras.utils.set_random_seed(0)
    model = keras.applications.EfficientNetB0(input_shape=(32, 32, 3), weights=None, classes=10)
    _randomize_batchnorm(model)
    model.save(path)
    return path


def bert_backbone():
    """keras_hub's BertBackbone in miniature: token, segment and position embeddings, one
    encoder layer masked by ``padding_mask``, a tanh pooler on the first token."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    token_ids = keras.Input((SEQ,), dtype="int32", name="token_ids")
    segment_ids = keras.Input((SEQ,), dtype="int32", name="segment_ids")
    padding_mask = keras.Input((SEQ,), dtype="int32", name="padding_mask")
    x = layers.Embedding(VOCAB, HIDDEN, name="token_embedding")(token_ids)
    x = x + layers.Embedding(2, HIDDEN, name="segment_embedding")(segment_ids)
    x = x + layers.Embedding(SEQ, HIDDEN, name="position_embedding")(keras.ops.arange(SEQ)[None, :])
    x = layers.LayerNormalization(name="embeddings_layer_norm")(x)
    attention_mask = keras.ops.cast(padding_mask[:, None, :], "bool")
    attended = layers.MultiHeadAttention(4, HIDDEN // 4, name="self_attention")(x, x, attention_mask=attention_mask)
    x = layers.LayerNormalization(name="attention_layer_norm")(x + attended)
    ffn = layers.Dense(HIDDEN, name="ffn_output")(layers.Dense(2 * HIDDEN, activation="gelu", name="ffn_input")(x))
    sequence = layers.LayerNormalization(name="ffn_layer_norm")(x + ffn)
    pooled = layers.Dense(HIDDEN, activation="tanh", name="pooled_dense")(sequence[:, 0, :])
    inputs = {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}
    return keras.Model(inputs, {"sequence_output": sequence, "pooled_output": pooled}, name="bert_backbone")


def bert_keras(path: Path) -> Path:
    bert_backbone().save(path)
    return path


def bert_saved_model(path: Path) -> Path:
    model = bert_backbone()
    model.export(str(path), format="tf_saved_model", verbose=False)
    return path

