"""Clip classification in the TensorFlow graph, shared by `predict` and the exported SavedModel.

`ClipClassifier` holds the one implementation of

    mono waveform [clips, samples] at the model's rate -> log-mel -> all whole segments ->
    classifier -> mean of the segments' probabilities per clip

that `musicnext-tf predict` runs (after decoding, mixing and resampling with soxr) and that the
exported `waveform` and `wav` signatures run after mixing to mono and resampling in the graph
(`graph_audio`), so the paths agree by construction up to the resampler. Segments are cut as in
feature preparation (consecutive, non-overlapping, from frame 0, the trailing partial segment
dropped), but a recording of any length contributes all its whole segments. The work runs in
steps of `SEGMENTS_PER_STEP` segments per clip, each computing only its own frames from the
once-padded waveform, so memory stays bounded for hour-long recordings.

`load_trained_model` finds the classifier, its config and its genres from a run folder or a model
file inside one.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from musicnext_tf.calibration import Calibration, read_calibration
from musicnext_tf.config import ExperimentConfig, FeatureConfig, load_run_config
from musicnext_tf.features import LogMelSpectrogram, frames_for_samples
from musicnext_tf.graph_audio import SUPPORTED_RATES, Resampler, decode_wav, mix_to_mono
from musicnext_tf.open_set import UNKNOWN, unit_rows
from musicnext_tf.run_folder import MODELS, RunError, choose_model, model_file

SEGMENTS_PER_STEP = 16  # per clip and step: about 130 MB of float64 STFT at 256 x 128 segments
_RUN_FILES = ("config.json", "run.json")
_MODEL_FILE_DEPTH = 3  # RUN_DIR/checkpoints/epoch-0007/best.keras is three levels below the run


@dataclass(frozen=True)
class TrainedModel:
    """A trained classifier with what it needs to classify audio.

    Attributes:
        classifier: segments [batch, segment_frames, n_mels, 1] -> logits [batch, classes].
        config: the run's resolved config (sample rate, features, clip rule).
        genres: genre names in class-id order.
        model_file: the `.keras` file the classifier was loaded from.
        run_dir: the run folder it belongs to.
        which: "best", "last" or None (a model file given by path).
        calibration: the temperature and open-set threshold fitted for this model, or None
            (probabilities as trained, every clip known).
    """

    classifier: keras.Model
    config: ExperimentConfig
    genres: tuple[str, ...]
    model_file: Path
    run_dir: Path
    which: str | None = None
    calibration: Calibration | None = None


def load_trained_model(model: str | os.PathLike, which: str | None = None) -> TrainedModel:
    """Loads a run's classifier: MODEL is a run folder written by `fit` (its best model when the
    run kept one, else its last, or `which`), or a `.keras` model file inside a run folder.

    Raises:
        RunError: MODEL is neither, or the model does not fit the run's genres and features.
    """

    path = Path(model)
    if path.is_dir():
        run_dir = path
        if not all((run_dir / name).is_file() for name in _RUN_FILES):
            raise RunError(
                f"{run_dir} is not a run folder (it needs {' and '.join(_RUN_FILES)}): give a "
                "folder written by `musicnext-tf fit`, or a .keras model file inside one"
            )
        which = choose_model(run_dir, which)
        path = model_file(run_dir, which)
    elif path.is_file() and path.suffix == ".keras":
        if which is not None:
            raise RunError(
                f"--model {which} chooses a model of a run folder, but {path} is a model file; "
                "give the run folder instead, or drop --model"
            )
        run_dir = _run_dir_of(path)
    else:
        raise RunError(
            f"{path}: no such run folder or .keras model file; give a folder written by "
            "`musicnext-tf fit` (or its model_best.keras / model_last.keras)"
        )
    config = load_run_config(run_dir)
    genres = tuple(json.loads((run_dir / "run.json").read_text())["genres"])
    from musicnext_tf import register_keras_objects

    register_keras_objects()  # the custom layers, for load_model

    classifier = keras.saving.load_model(path)
    _check_fits(classifier, path, config.features, genres)
    stem = path.stem.removeprefix("model_")
    calibration = read_calibration(run_dir, which or stem) if (which or stem) in MODELS else None
    return TrainedModel(classifier, config, genres, path, run_dir, which, calibration)


def _run_dir_of(model_file: Path) -> Path:
    """The run folder holding a model file: the nearest ancestor with config.json and run.json."""
    for folder in list(model_file.absolute().parents)[:_MODEL_FILE_DEPTH]:
        if all((folder / name).is_file() for name in _RUN_FILES):
            return folder
    raise RunError(
        f"{model_file}: no run folder (config.json and run.json) above it, so its genres, sample "
        "rate and features are unknown; use a model file inside a folder written by `fit`"
    )


def _check_fits(classifier, path: Path, features: FeatureConfig, genres: Sequence[str]) -> None:
    expected_input = (None, features.segment_frames, features.n_mels, 1)
    if tuple(classifier.input_shape) != expected_input or classifier.output_shape[-1] != len(
        genres
    ):
        raise RunError(
            f"{path}: the model maps {classifier.input_shape} to {classifier.output_shape}, but its "
            f"run expects segments {expected_input} and {len(genres)} genres; the model file does "
            "not belong to this run folder"
        )


def min_samples(features: FeatureConfig) -> int:
    """The shortest waveform that holds one whole segment: (segment_frames - 1) * hop_length."""
    return (features.segment_frames - 1) * features.hop_length


def whole_segments(samples, features: FeatureConfig):
    """How many whole segments a waveform of `samples` samples gives (an int or a tensor)."""
    return frames_for_samples(samples, features.hop_length) // features.segment_frames


class ClipClassifier:
    """Classifies log-mel segments and whole waveforms with a trained classifier, in the graph.

    The methods are plain functions of tensors (for `keras.export.ExportArchive`, which traces them
    with the specs below); `classify_waveform` runs the mono graph from Python.

    Args:
        classifier: segments -> logits, with a layer named "pooling" (the pooled features).
        features: the run's feature settings (segment and mel sizes, STFT).
        sample_rate: the sample rate the waveform must have.
        genres: genre names in class-id order; they become constants of the graph.
        segments_per_step: segments per clip processed at once in `mono`.
        source_rates: the input sample rates `waveform` and `wav` resample from (their filters
            are measured when those are first traced and become constants of the graph).
        calibration: the logits' temperature and the open-set score and threshold (None: a
            temperature of 1, the cosine score, every clip known).
    """

    def __init__(
        self,
        classifier: keras.Model,
        features: FeatureConfig,
        sample_rate: int,
        genres: Sequence[str],
        segments_per_step: int = SEGMENTS_PER_STEP,
        source_rates: Sequence[int] = SUPPORTED_RATES,
        calibration: Calibration | None = None,
    ):
        self.classifier = classifier
        self.calibration = calibration or Calibration()
        self.features = features
        self.sample_rate = int(sample_rate)
        self.genres = tuple(genres)
        self.segments_per_step = int(segments_per_step)
        self._scores = keras.Model(
            classifier.input,
            {"logits": classifier.output, "embedding": classifier.get_layer("pooling").output},
            name="scores",
        )
        # the waveform is centre-padded once, so the pieces are framed without padding
        self._log_mel = LogMelSpectrogram.from_feature_config(
            features, sample_rate, center=False, name="log_mel"
        )
        self._genre_names = tf.constant(self.genres)
        self._class_weights = classifier.get_layer("head").kernel  # [features, classes]
        reference = self.calibration.reference
        # a run calibrated before the knn score existed, or not at all, scores by cosine
        self._score = "cosine" if reference is None else self.calibration.score
        if reference is not None:  # unit rows [training clips, features], a graph constant
            self._reference = tf.constant(unit_rows(reference), tf.float32)
        self._source_rates = tuple(source_rates)
        self._pooled_size = classifier.get_layer("pooling").output.shape[-1]
        # a partial, not the bound method: TensorFlow counts the traces of every function with
        # the same code together and warns of "retracing" once a few classifiers have traced
        mono = functools.partial(ClipClassifier.mono, self)
        self._mono_graph = tf.function(mono, input_signature=[self.mono_spec])

    @functools.cached_property
    def _resampler(self) -> Resampler:
        """Built when first needed (by the `waveform` and `wav` signatures): measuring soxr's
        filters for every source rate takes seconds, which `predict` need not spend."""
        return Resampler(self.sample_rate, self._source_rates)

    @property
    def segments_spec(self) -> tf.TensorSpec:
        """float32 [batch, segment_frames, n_mels, 1]: log-mel segments before standardisation."""
        shape = [None, self.features.segment_frames, self.features.n_mels, 1]
        return tf.TensorSpec(shape, tf.float32, name="segments")

    @property
    def mono_spec(self) -> tf.TensorSpec:
        """float32 [batch, samples]: mono audio at `sample_rate`, one clip per row."""
        return tf.TensorSpec([None, None], tf.float32, name="waveform")

    @property
    def waveform_specs(self) -> list[tf.TensorSpec]:
        """`audio` float32 [batch, samples, channels] at `sample_rate` int32 (a scalar, or one
        value per clip, all equal): audio as clients have it, one clip per row."""
        return [
            tf.TensorSpec([None, None, None], tf.float32, name="audio"),
            tf.TensorSpec(None, tf.int32, name="sample_rate"),
        ]

    @property
    def wav_spec(self) -> tf.TensorSpec:
        """string [batch]: the bytes of whole WAV files, one clip each."""
        return tf.TensorSpec([None], tf.string, name="wav")

    def _probabilities(self, logits: tf.Tensor) -> tf.Tensor:
        """The calibrated probabilities: softmax(logits / temperature)."""
        return tf.nn.softmax(tf.cast(logits, tf.float32) / self.calibration.temperature, axis=-1)

    def _decision(self, probabilities: tf.Tensor) -> dict[str, tf.Tensor]:
        class_id = tf.argmax(probabilities, axis=-1)
        return {
            "probabilities": probabilities,
            "class_id": class_id,
            "genre": tf.gather(self._genre_names, class_id),
        }

    def _open_set(self, probabilities: tf.Tensor, embedding: tf.Tensor) -> dict[str, tf.Tensor]:
        """Per clip: the open-set `score` (`open_set.clip_scores`), `is_known` (score >= the
        threshold), `best_genre` (the most probable genre) and `genre` ("unknown" when rejected)."""
        rows = tf.math.l2_normalize(embedding, axis=-1)
        if self._score == "knn":
            similarities = tf.matmul(rows, self._reference, transpose_b=True)
            neighbours = min(self.calibration.neighbours, int(self._reference.shape[0]))
            score = tf.math.top_k(similarities, k=neighbours).values[:, -1]
        elif self._score == "cosine":
            columns = tf.math.l2_normalize(tf.cast(self._class_weights, tf.float32), axis=0)
            score = tf.reduce_max(tf.matmul(rows, columns), axis=-1)
        else:
            score = tf.reduce_max(probabilities, axis=-1)
        threshold = self.calibration.threshold
        is_known = score >= (-float("inf") if threshold is None else threshold)
        best = tf.gather(self._genre_names, tf.argmax(probabilities, axis=-1))
        return {
            "score": score,
            "is_known": is_known,
            "best_genre": best,
            "genre": tf.where(is_known, best, tf.constant(UNKNOWN)),
        }

    def segments(self, segments: tf.Tensor) -> dict[str, tf.Tensor]:
        """Per segment: `probabilities` [batch, classes], `class_id` int64 [batch], `genre` [batch]."""
        logits = self._scores(segments, training=False)["logits"]
        return self._decision(self._probabilities(logits))

    def embedding(self, segments: tf.Tensor) -> dict[str, tf.Tensor]:
        """Per segment: `embedding` [batch, features], the pooled features the head classifies."""
        return {"embedding": self._scores(segments, training=False)["embedding"]}

    def waveform(self, audio: tf.Tensor, sample_rate: tf.Tensor) -> dict[str, tf.Tensor]:
        """`mono` of audio as clients have it: any channel count (mixed to their mean, as
        `predict` does) at any rate of `source_rates` (resampled in the graph).

        Args:
            audio: float32 [clips, samples, channels].
            sample_rate: int32 scalar, or [clips] holding one rate.
        """
        rates = tf.reshape(sample_rate, [-1])
        same = tf.debugging.assert_equal(
            rates,
            tf.fill(tf.shape(rates), rates[0]),
            message="the clips of one request must share one sample_rate: send clips recorded "
            "at different rates in separate requests",
        )
        with tf.control_dependencies([same]):
            rate = tf.identity(rates[0])
        return self.mono(self._resampler(mix_to_mono(audio), rate))

    def wav(self, wav: tf.Tensor) -> dict[str, tf.Tensor]:
        """`mono` of whole WAV files (decoded, mixed and resampled in the graph), one per clip.
        The timeline outputs are padded to the longest file (zeros after `segment_count`).

        Args:
            wav: string [clips]; each file may have its own length, channels and rate.
        """
        classes = len(self.genres)

        def one_file(contents):
            audio, rate = decode_wav(contents)
            clip = self.mono(self._resampler(mix_to_mono(audio[None]), rate))
            return {name: value[0] for name, value in clip.items()}

        per_segment = {
            "segment_probabilities": tf.RaggedTensorSpec([None, classes], tf.float32, 0),
            "segment_start_s": tf.RaggedTensorSpec([None], tf.float32, 0),
            "segment_end_s": tf.RaggedTensorSpec([None], tf.float32, 0),
        }
        one_clip = {
            "probabilities": tf.TensorSpec([classes], tf.float32),
            "class_id": tf.TensorSpec([], tf.int64),
            "genre": tf.TensorSpec([], tf.string),
            "best_genre": tf.TensorSpec([], tf.string),
            "score": tf.TensorSpec([], tf.float32),
            "is_known": tf.TensorSpec([], tf.bool),
            "embedding": tf.TensorSpec([self._pooled_size], tf.float32),
            "segment_count": tf.TensorSpec([], tf.int32),
            **per_segment,
        }
        outputs = tf.map_fn(one_file, wav, fn_output_signature=one_clip)
        for name in per_segment:
            outputs[name] = outputs[name].to_tensor()
        return outputs

    def mono(self, waveform: tf.Tensor, timeline: bool = True) -> dict[str, tf.Tensor]:
        """Per clip: the mean over its whole segments of the calibrated `probabilities` and of
        the `embedding`, the open-set decision (`_open_set`) and, with `timeline`, every
        segment's probabilities and times.

        Args:
            waveform: float32 [clips, samples], at least `min_samples(features)` samples.
            timeline: also return the per-segment outputs (LiteRT leaves them out: its builtin
                ops have no growing tensor lists).
        Returns:
            `probabilities` [clips, classes], `class_id` int64 [clips] (the most probable genre),
            `genre` string [clips] ("unknown" when rejected), `best_genre`, `score` float32,
            `is_known` bool, `embedding` [clips, features], `segment_count` int32 [clips]; with
            `timeline`: `segment_probabilities` [clips, segments, classes] and `segment_start_s`,
            `segment_end_s` [clips, segments] (seconds from the start of the waveform).
        """
        features = self.features
        frames, hop = features.segment_frames, features.hop_length
        classes = len(self.genres)
        clips, samples = tf.shape(waveform)[0], tf.shape(waveform)[1]
        count = whole_segments(samples, features)
        needed = min_samples(features)
        check = tf.debugging.assert_positive(
            count,
            message=f"the waveform is too short: one segment needs at least {needed} samples "
            f"({needed / self.sample_rate:.2f} s at {self.sample_rate} Hz)",
        )
        half = features.n_fft // 2
        with tf.control_dependencies([check]):
            padded = tf.pad(waveform, [[0, 0], [half, half]])
        step = self.segments_per_step

        def one_step(index, probability_sum, embedding_sum, timeline_steps):
            first = index * step
            taken = tf.minimum(step, count - first)
            start = first * frames * hop
            piece = padded[:, start : start + (taken * frames - 1) * hop + features.n_fft]
            log_mel = self._log_mel(piece)  # [clips, taken * frames, n_mels]
            segments = tf.reshape(log_mel, [clips * taken, frames, features.n_mels, 1])
            scores = self._scores(segments, training=False)
            probabilities = tf.reshape(self._probabilities(scores["logits"]), [clips, taken, -1])
            if timeline:  # [taken, clips, classes] per step, concatenated along segments below
                timeline_steps = timeline_steps.write(index, tf.transpose(probabilities, [1, 0, 2]))
            embeddings = tf.reshape(scores["embedding"], [clips, taken, -1])
            return (
                index + 1,
                probability_sum + tf.reduce_sum(probabilities, axis=1),
                embedding_sum + tf.reduce_sum(embeddings, axis=1),
                timeline_steps,
            )

        # every step's [taken, clips, classes], concatenated along segments below; without the
        # timeline a placeholder scalar keeps the loop free of tensor lists
        steps = (
            tf.TensorArray(
                tf.float32,
                size=0,
                dynamic_size=True,
                infer_shape=False,
                element_shape=tf.TensorShape([None, None, classes]),
            )
            if timeline
            else tf.constant(0.0)
        )
        _, probability_sum, embedding_sum, steps = tf.while_loop(
            lambda index, *_: index * step < count,
            one_step,
            (
                tf.constant(0),
                tf.zeros([clips, classes]),
                tf.zeros([clips, self._pooled_size]),
                steps,
            ),
            # the sums' batch size may be static outside the loop and dynamic inside it
            shape_invariants=(
                tf.TensorShape([]),
                tf.TensorShape([None, classes]),
                tf.TensorShape([None, self._pooled_size]),
                tf.TensorShape(None) if timeline else tf.TensorShape([]),
            ),
        )
        probabilities = probability_sum / tf.cast(count, tf.float32)
        embedding = embedding_sum / tf.cast(count, tf.float32)
        outputs = {
            **self._decision(probabilities),
            **self._open_set(probabilities, embedding),
            "embedding": embedding,
            "segment_count": tf.fill([clips], tf.cast(count, tf.int32)),
        }
        if timeline:
            seconds = float(frames * hop) / self.sample_rate
            starts = tf.range(count, dtype=tf.float32) * seconds
            with tf.control_dependencies([check]):  # its message, not the empty list's
                per_segment = steps.concat()
            outputs.update(
                segment_probabilities=tf.transpose(per_segment, [1, 0, 2]),
                segment_start_s=tf.tile(starts[None], [clips, 1]),
                segment_end_s=tf.tile(starts[None] + seconds, [clips, 1]),
            )
        return outputs

    def classify_waveform(self, waveform) -> dict:
        """Runs `mono` on a batch of equal-length clips [clips, samples] (numpy or tensor);
        returns numpy arrays (genre names as str)."""
        outputs = self._mono_graph(tf.convert_to_tensor(waveform, tf.float32))
        result = {name: value.numpy() for name, value in outputs.items()}
        for name in ("genre", "best_genre"):
            result[name] = [genre.decode("utf-8") for genre in result[name]]
        return result

    @classmethod
    def from_trained(cls, trained: TrainedModel, **kwargs) -> ClipClassifier:
        return cls(
            trained.classifier,
            trained.config.features,
            trained.config.audio.sample_rate,
            trained.genres,
            calibration=trained.calibration,
            **kwargs,
        )
