"""WAV decoding, mixing to mono and resampling as TensorFlow graph ops, for serving raw audio.

The exported SavedModel can then take what clients have, the bytes of a .wav file, and give the
same log-mel input as the numpy reference path (`audio.to_mono` + `audio.resample`, i.e. soundfile,
`samples.mean(axis=1)` and soxr's "HQ" mode). Everything is core TensorFlow ops (no tensorflow-io,
py_function or numpy at call time), so it saves with unknown input shapes and runs in TF Serving.

`decode_wav` walks the RIFF chunks with a `tf.while_loop`, reads `fmt ` with `tf.strings.substr` and
`tf.io.decode_raw`, and decodes the `data` chunk in one `tf.switch_case` branch per encoding.
String ops are not LiteRT builtins, so on LiteRT only `mix_to_mono` and `Resampler` are meant to run
(`Resampler` uses matmul, gather, slicing, reshape, pad, concat and tf.cond, all float32; it
converts to LiteRT builtins, about 6 MB as the converter folds the gathered matrices; LiteRT drops
tf.Assert, so there an unsupported rate is resampled as if it were the first supported one).

`Resampler` is a polyphase FIR resampler. For a rate pair with reduced ratio L/M, output sample
q*L + r is a dot product of the input near q*M with a filter for phase r. Output blocks are grouped
G at a time (L' = G*L outputs from a hop of M' = G*M inputs, with M' at least half a filter), so
one call is ONE matmul: the zero-padded input, cut into blocks of M' samples, is framed into
[batch, Q, K] by concatenating J shifted copies of the blocks, and multiplied by a [K, L'] matrix
whose column r holds phase r's filter at its offset. That matrix is gathered at call time from a
compact bank of L filters of T taps (about L times the filter's span in input samples), so the
graph's constants are the banks, not the mostly-zero matrices. The rate is a runtime tensor: one
tf.cond branch per supported source rate (the target rate itself is the identity); any other
rate fails with InvalidArgumentError.

The filters are soxr's own. soxr "HQ" is a multi-stage design (half-band decimators, a DFT-filter
stage and a polyphase stage, each a Kaiser-windowed sinc), and for rational ratios the whole chain
is a linear, periodically time-varying filter: M inputs in, L outputs out. `Resampler` measures that
filter at construction (export time) by passing M unit impulses through `soxr.resample` (one per
input phase) and keeps, for each output phase, the taps above 3e-7 of the peak. The kernel is
linear phase and centred, so there is no delay: output n is aligned with input time n * M / L.
soxr's first outputs (up to 76 at 22050 Hz) come from its stages starting up, not from zero-padded
input. A small correction matrix [S inputs, E outputs], measured the same way, is added to
those outputs. The output length is soxr's, round(n * L / M) with halves rounded up. Such a
filter matches soxr to float32 round-off. A single-stage Kaiser windowed sinc to soxr HQ's nominal
spec (passband end 0.9136, stopband 1.0 of the lower Nyquist, 126 dB) does not. Above 97% of the
lower Nyquist its response differs from soxr's by 1-5 dB, and that moved the top log-mel bands
by up to 2 dB.

Constants for `Resampler(22050)` over `SUPPORTED_RATES`: 551,956 float32 (2.2 MB). The filter banks
take 522,813 of them (8000 and 16000 Hz: 441 phases x 196 taps; 32000: 441 x 283; 96000: 147 x
880; 11025, 44100 and 88200 Hz: one or two phases). The start-up corrections take 29,143, the
largest [343, 76] for 96000 Hz. `Resampler(16000)` holds 428,554 floats, and
`Resampler.constant_floats` gives the count for any set of rates.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soxr
import tensorflow as tf

SUPPORTED_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)

# --- WAV -----------------------------------------------------------------------------------------

_WAVE_FORMAT_PCM = 1
_WAVE_FORMAT_IEEE_FLOAT = 3
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# (format tag, bits per sample), in the order of the decoding branches
_ENCODINGS = tuple((_WAVE_FORMAT_PCM, bits) for bits in (8, 16, 24, 32)) + (
    (_WAVE_FORMAT_IEEE_FLOAT, 32),
    (_WAVE_FORMAT_IEEE_FLOAT, 64),
)
# names of common tags that are not supported, for the error message
_TAG_NAMES = {2: "MS ADPCM", 6: "A-law", 7: "mu-law", 0x11: "IMA ADPCM", 0x31: "GSM 6.10"}
_TAG_NAMES |= {0x50: "MPEG", 0x55: "MP3", _WAVE_FORMAT_EXTENSIBLE: "extensible, short fmt chunk"}
_SUPPORTED_WAV = (
    "supported: PCM 8 (unsigned), 16, 24 or 32 bits and IEEE float 32 or 64 bits, "
    "plain or as WAVE_FORMAT_EXTENSIBLE, any number of channels"
)
# a safety stop for files made of many tiny chunks: far more than any writer uses
_MAX_CHUNKS = 4096


def _read_uint(contents: tf.Tensor, length: tf.Tensor, pos: tf.Tensor, size: int) -> tf.Tensor:
    """The little-endian unsigned integer of `size` bytes at byte `pos`, as int64; bytes that lie
    past the end (or a negative `pos`) read as 0, so that garbage never raises here."""
    start = tf.clip_by_value(pos, 0, length)
    count = tf.where(pos < 0, tf.constant(0, tf.int64), tf.constant(size, tf.int64))
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(contents, start, count), tf.uint8), tf.int64)
    raw = tf.pad(raw, [[0, size - tf.shape(raw)[0]]])
    return tf.reduce_sum(raw * tf.constant([256**i for i in range(size)], tf.int64))


def _bytes_at(contents: tf.Tensor, length: tf.Tensor, pos: tf.Tensor, size: int) -> tf.Tensor:
    """The (up to) `size` bytes at `pos` as a string, empty past the end."""
    return tf.strings.substr(contents, tf.minimum(pos, length), size)


def _find_chunks(contents: tf.Tensor, length: tf.Tensor, is_wave: tf.Tensor):
    """Walks the RIFF chunks after the 12-byte header. Returns the byte offsets and declared sizes
    of the first `fmt ` and `data` chunks' bodies (-1 where absent)."""
    minus_one = tf.constant(-1, tf.int64)

    def keep_walking(pos, fmt_pos, fmt_size, data_pos, data_size):
        return (pos + 8 <= length) & ((fmt_pos < 0) | (data_pos < 0))

    def next_chunk(pos, fmt_pos, fmt_size, data_pos, data_size):
        chunk_id = _bytes_at(contents, length, pos, 4)
        size = _read_uint(contents, length, pos + 4, 4)
        body = pos + 8
        is_fmt = tf.equal(chunk_id, "fmt ") & (fmt_pos < 0)
        is_data = tf.equal(chunk_id, "data") & (data_pos < 0)
        return (
            body + size + size % 2,  # bodies of odd size are padded to even length
            tf.where(is_fmt, body, fmt_pos),
            tf.where(is_fmt, size, fmt_size),
            tf.where(is_data, body, data_pos),
            tf.where(is_data, size, data_size),
        )

    start = tf.where(is_wave, tf.constant(12, tf.int64), length)  # not a WAV: skip the walk
    _, fmt_pos, fmt_size, data_pos, data_size = tf.while_loop(
        keep_walking,
        next_chunk,
        (start, minus_one, minus_one, minus_one, minus_one),
        maximum_iterations=_MAX_CHUNKS,
    )
    return fmt_pos, fmt_size, data_pos, data_size


def _decode_samples(data: tf.Tensor, encoding: int) -> tf.Tensor:
    """Raw little-endian samples -> float32 [n] in [-1, 1] for one of `_ENCODINGS`."""
    tag, bits = _ENCODINGS[encoding]
    if tag == _WAVE_FORMAT_IEEE_FLOAT:
        dtype = tf.float32 if bits == 32 else tf.float64
        return tf.cast(tf.io.decode_raw(data, dtype, little_endian=True), tf.float32)
    if bits == 8:  # unsigned, 128 is zero
        return (tf.cast(tf.io.decode_raw(data, tf.uint8), tf.float32) - 128.0) / 128.0
    if bits == 24:
        raw = tf.cast(tf.reshape(tf.io.decode_raw(data, tf.uint8), [-1, 3]), tf.int32)
        value = raw[:, 0] + raw[:, 1] * 256 + raw[:, 2] * 65536
        value = tf.where(value >= 1 << 23, value - (1 << 24), value)  # sign extension
        return tf.cast(value, tf.float32) / float(1 << 23)
    dtype = tf.int16 if bits == 16 else tf.int32
    samples = tf.io.decode_raw(data, dtype, little_endian=True)
    return tf.cast(samples, tf.float32) / float(1 << (bits - 1))


def decode_wav(contents: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A whole .wav file (scalar string tensor) -> (float32 [samples, channels] in [-1, 1], int32
    scalar sample rate), as `soundfile.read` decodes it.

    Reads PCM 8 (unsigned), 16, 24 and 32 bits and IEEE float 32 and 64 bits, plain or as
    WAVE_FORMAT_EXTENSIBLE, any number of channels; chunks other than `fmt ` and `data` (LIST,
    fact, bext, ...) are skipped. A `data` chunk that claims more bytes than the file holds
    (a truncated file, or a streaming writer's 0xFFFFFFFF) gives the whole frames that are there.

    Raises:
        tf.errors.InvalidArgumentError (when run) for anything else: not RIFF/WAVE, no `fmt ` or
            `data` chunk, no channels or sample rate, or an unsupported encoding (A-law, mu-law,
            ADPCM, 12-bit PCM, ...), with a message that says which and what is supported.
    """
    contents = tf.convert_to_tensor(contents, tf.string)
    length = tf.cast(tf.strings.length(contents), tf.int64)
    is_wave = (length >= 12) & tf.equal(
        _bytes_at(contents, length, tf.constant(0, tf.int64), 4), "RIFF"
    )
    is_wave &= tf.equal(_bytes_at(contents, length, tf.constant(8, tf.int64), 4), "WAVE")
    fmt_pos, fmt_size, data_pos, data_size = _find_chunks(contents, length, is_wave)

    tag = _read_uint(contents, length, fmt_pos, 2)
    channels = _read_uint(contents, length, fmt_pos + 2, 2)
    rate = _read_uint(contents, length, fmt_pos + 4, 4)
    bits = _read_uint(contents, length, fmt_pos + 14, 2)
    # WAVE_FORMAT_EXTENSIBLE: the subformat GUID (at 24) starts with the plain format tag
    extensible = tf.equal(tag, _WAVE_FORMAT_EXTENSIBLE) & (fmt_size >= 26)
    tag = tf.where(extensible, _read_uint(contents, length, fmt_pos + 24, 2), tag)

    keys = tf.constant([t * 1000 + b for t, b in _ENCODINGS], tf.int64)
    matches = tf.equal(keys, tag * 1000 + bits)
    encoding = tf.argmax(tf.cast(matches, tf.int32), output_type=tf.int32)

    known = tf.constant(list(_TAG_NAMES), tf.int64)
    names = tf.constant([f" ({name})" for name in _TAG_NAMES.values()] + [""])
    tag_name = tf.gather(
        names, tf.argmax(tf.concat([tf.cast(tf.equal(known, tag), tf.int32), [1]], 0))
    )
    unsupported = tf.strings.join(
        [
            "decode_wav: unsupported WAV encoding: format tag ",
            tf.strings.as_string(tag),
            tag_name,
            ", ",
            tf.strings.as_string(bits),
            " bits per sample; ",
            _SUPPORTED_WAV,
        ]
    )
    problems = [  # (is wrong, message), the first that applies is reported
        (
            ~is_wave,
            "decode_wav: not a WAV file (it does not start with RIFF....WAVE); expected a "
            f"RIFF/WAVE file, {_SUPPORTED_WAV}",
        ),
        (fmt_pos < 0, "decode_wav: the WAV file has no fmt chunk (or it lies past the end)"),
        (data_pos < 0, "decode_wav: the WAV file has no data chunk (or it lies past the end)"),
        (fmt_size < 16, "decode_wav: the WAV file's fmt chunk is shorter than 16 bytes"),
        (channels < 1, "decode_wav: the WAV file's fmt chunk declares 0 channels"),
        (rate < 1, "decode_wav: the WAV file's fmt chunk declares a sample rate of 0"),
        (~tf.reduce_any(matches), unsupported),
    ]
    message = tf.constant("")
    for wrong, text in reversed(problems):
        message = tf.where(wrong, text, message)
    valid = ~tf.reduce_any(tf.stack([wrong for wrong, _ in problems]))
    check = tf.debugging.Assert(valid, [message])

    with tf.control_dependencies([] if check is None else [check]):
        frame_bytes = tf.maximum(channels * (bits // 8), 1)
        available = tf.clip_by_value(tf.minimum(data_size, length - data_pos), 0, length)
        data = tf.strings.substr(
            contents, tf.maximum(data_pos, 0), available // frame_bytes * frame_bytes
        )
        branches = [functools.partial(_decode_samples, data, i) for i in range(len(_ENCODINGS))]
        samples = tf.switch_case(encoding, branches)
        audio = tf.reshape(samples, [-1, tf.cast(channels, tf.int32)])
    return audio, tf.cast(rate, tf.int32)


def mix_to_mono(audio: tf.Tensor) -> tf.Tensor:
    """float32 [batch, samples, channels] -> [batch, samples]: the mean of the channels, as
    `audio.to_mono` (numpy's `samples.mean(axis=1)`) gives for each clip."""
    return tf.reduce_mean(tf.convert_to_tensor(audio, tf.float32), axis=-1)


# --- resampling ----------------------------------------------------------------------------------


def output_length(num_samples: int, source_rate: int, target_rate: int) -> int:
    """soxr's output length: num_samples * target / source rounded to nearest, halves up."""
    g = math.gcd(source_rate, target_rate)
    up, down = target_rate // g, source_rate // g
    return (2 * num_samples * up + down) // (2 * down)


@dataclass(frozen=True)
class _Plan:
    """One rate pair's polyphase filter and the shape of its matmul (see the module docstring)."""

    up: int  # L
    down: int  # M
    group: int  # G
    taps: int  # T, the taps of each phase's filter
    left_pad: int  # zeros before the input, so that every frame starts at q * M'
    frame: int  # K, the input samples per frame
    bank: np.ndarray  # float32 [L * T + 1]: phase r's taps at [r * T, (r + 1) * T), then a 0
    column_start: np.ndarray  # int32 [L']: frame row of column r's first tap
    column_phase: np.ndarray  # int32 [L']: r mod L
    head: np.ndarray | None  # float32 [S, E]: soxr's start-up, added to the first E outputs

    @property
    def constant_floats(self) -> int:
        return self.bank.size + (0 if self.head is None else self.head.size)


def _soxr_impulse_responses(
    positions: np.ndarray, length: int, source_rate: int, target_rate: int, quality: str
) -> np.ndarray:
    """soxr's output [len(positions), out] for unit impulses at `positions` in `length` zeros."""
    responses = []
    for first in range(0, len(positions), 128):  # 128 channels per call bounds the memory
        chunk = positions[first : first + 128]
        impulses = np.zeros((length, len(chunk)))
        impulses[chunk, np.arange(len(chunk))] = 1.0
        responses.append(soxr.resample(impulses, source_rate, target_rate, quality=quality).T)
    return np.concatenate(responses)


@functools.cache  # one measurement per rate pair and process
def _measure_plan(source_rate: int, target_rate: int, quality: str, tap_floor: float) -> _Plan:
    """Measures soxr's periodic filter and start-up for one rate pair (see the module docstring)."""
    g = math.gcd(source_rate, target_rate)
    up, down = target_rate // g, source_rate // g
    ratio = f"{source_rate} -> {target_rate} Hz"
    if max(up, down) > 4096:
        raise ValueError(
            f"Resampler: {ratio} reduces to {up}/{down}; ratios with "
            "terms above 4096 are not supported"
        )

    # the periodic filter: impulses at every input phase, far from the start and the end
    base = down * -(-4096 // down)
    responses = _soxr_impulse_responses(
        base + np.arange(down), 2 * base + down, source_rate, target_rate, quality
    )
    peak = np.abs(responses).max()
    used = np.nonzero((np.abs(responses) > tap_floor * peak).any(axis=0))[0]
    if used[0] < responses.shape[1] // 4 or used[-1] > responses.shape[1] * 3 // 4:
        raise RuntimeError(f"Resampler: soxr's filter for {ratio} is longer than expected")
    centre = base * up // down - used[0]
    responses = responses[:, used[0] : used[-1] + 1]
    # tap (phase p, output centre + d) belongs to output phase r = d mod L, at input offset
    # j = p - (d div L) * M relative to the start of its block of M inputs
    delta = np.arange(responses.shape[1]) - centre
    offsets = np.broadcast_to(
        np.arange(down)[:, None] - (delta // up)[None, :] * down, responses.shape
    )
    phases = np.broadcast_to(delta % up, responses.shape)
    significant = np.abs(responses) > tap_floor * peak
    first = np.full(up, np.iinfo(np.int64).max)
    last = np.full(up, np.iinfo(np.int64).min)
    np.minimum.at(first, phases[significant], offsets[significant])
    np.maximum.at(last, phases[significant], offsets[significant])
    taps = int((last - first).max()) + 1
    # fill every phase's T taps from the responses (including taps below the floor inside)
    tap_offsets = first[:, None] + np.arange(taps)[None, :]  # [L, T]
    input_phase = tap_offsets % down
    output_index = centre + np.arange(up)[:, None] - (tap_offsets - input_phase) // down * up
    bank = np.where(
        (output_index >= 0) & (output_index < responses.shape[1]),
        responses[input_phase, np.clip(output_index, 0, responses.shape[1] - 1)],
        0.0,
    )

    # group G output blocks per frame so that a frame's hop M' is at least half a filter
    group = 1
    while group * down < taps / 2:
        group *= 2
    columns = np.arange(group * up)
    column_start = first[columns % up] + columns // up * down
    left_pad = max(0, -int(column_start.min()))
    column_start = column_start + left_pad
    frame = int(column_start.max()) + taps

    # soxr's start-up: impulses at the first inputs, against what the periodic filter gives
    span = 2 * (taps + down)
    starts = np.arange(span)
    heads = _soxr_impulse_responses(starts, 3 * span, source_rate, target_rate, quality)
    outputs = heads.shape[1]
    periodic = np.zeros_like(heads)
    n = np.arange(outputs)
    rows = (n // up * down)[:, None] + first[n % up][:, None] + np.arange(taps)[None, :]
    inside = (rows >= 0) & (rows < len(starts))
    periodic[rows[inside], np.broadcast_to(n[:, None], rows.shape)[inside]] = bank[n % up][inside]
    differs = np.abs(heads - periodic) > 10 * tap_floor * peak
    head = None
    if differs.any():
        s = int(np.nonzero(differs.any(axis=1))[0].max()) + 1
        e = int(np.nonzero(differs.any(axis=0))[0].max()) + 1
        if s > span - taps or e > outputs // 2:
            raise RuntimeError(
                f"Resampler: soxr's start-up for {ratio} is longer than expected; soxr may not "
                "be periodic for this ratio"
            )
        head = (heads - periodic)[:s, :e].astype(np.float32)

    return _Plan(
        up=up,
        down=down,
        group=group,
        taps=taps,
        left_pad=left_pad,
        frame=frame,
        bank=np.append(bank.ravel(), 0.0).astype(np.float32),
        column_start=column_start.astype(np.int32),
        column_phase=(columns % up).astype(np.int32),
        head=head,
    )


class Resampler:
    """Band-limited polyphase resampling from any of `source_rates` to `target_rate`, matching
    `soxr.resample(x, rate, target_rate, quality=quality)` (length, alignment and response).

    The filters are measured from soxr in numpy at construction (export time, about 0.1-0.5 s
    per rate) and applied with TF ops; see the module docstring.

    Args:
        target_rate: the output rate in Hz.
        source_rates: the input rates to support (the target rate itself is passed through).
        quality: the soxr quality recipe to match ("HQ" is `audio.resample`'s).
        tap_floor: taps smaller than this fraction of the largest are dropped. soxr's own float32
            round-off scatters values up to about 1.2e-7 around each impulse response; 3e-7
            stays above that and keeps the difference from soxr near float32 round-off.
    """

    def __init__(
        self,
        target_rate: int = 22050,
        source_rates: tuple[int, ...] = SUPPORTED_RATES,
        quality: str = "HQ",
        tap_floor: float = 3e-7,
    ):
        self.target_rate = int(target_rate)
        self.source_rates = tuple(sorted({int(rate) for rate in source_rates}))
        if not self.source_rates or min(self.source_rates) <= 0 or self.target_rate <= 0:
            raise ValueError("Resampler: rates must be positive, with at least one source rate")
        self._plans = [
            None
            if rate == self.target_rate
            else _measure_plan(rate, self.target_rate, quality, tap_floor)
            for rate in self.source_rates
        ]

    @property
    def constant_floats(self) -> int:
        """How many float32 constants the graph holds (filter banks and start-up corrections)."""
        return sum(plan.constant_floats for plan in self._plans if plan is not None)

    def __call__(self, waveform: tf.Tensor, sample_rate: tf.Tensor) -> tf.Tensor:
        """float32 [batch, samples] at int32 scalar `sample_rate` -> float32 [batch, out_samples]
        at `target_rate`, out_samples = `output_length(samples, sample_rate, target_rate)`.

        Raises:
            tf.errors.InvalidArgumentError (when run) for a rate not in `source_rates`.
        """
        waveform = tf.convert_to_tensor(waveform, tf.float32)
        sample_rate = tf.cast(sample_rate, tf.int32)
        matches = tf.equal(tf.constant(self.source_rates, tf.int32), sample_rate)
        listed = ", ".join(str(rate) for rate in self.source_rates)
        check = tf.debugging.Assert(
            tf.reduce_any(matches),
            ["Resampler: unsupported sample rate (Hz):", sample_rate, f"supported rates: {listed}"],
        )
        with tf.control_dependencies([] if check is None else [check]):
            index = tf.argmax(tf.cast(matches, tf.int32), output_type=tf.int32)
        branches = [functools.partial(_apply, plan, waveform) for plan in self._plans]
        return _select(index, branches)


def _select(index: tf.Tensor, branches: list[Callable[[], tf.Tensor]], first: int = 0) -> tf.Tensor:
    """`branches[index]()`, as a chain of tf.cond: If ops convert to LiteRT, switch_case's Case
    op does not."""
    if first == len(branches) - 1:
        return branches[first]()
    return tf.cond(
        tf.equal(index, first), branches[first], lambda: _select(index, branches, first + 1)
    )


def _filter_matrix(plan: _Plan) -> tf.Tensor:
    """The [K, L'] matrix whose column r is output phase r's filter at its frame offset."""
    row = tf.range(plan.frame, dtype=tf.int32)[:, None] - tf.constant(plan.column_start)[None, :]
    inside = (row >= 0) & (row < plan.taps)
    index = tf.where(
        inside, tf.constant(plan.column_phase * plan.taps)[None, :] + row, plan.bank.size - 1
    )
    return tf.gather(tf.constant(plan.bank), index)


def _apply(plan: _Plan | None, waveform: tf.Tensor) -> tf.Tensor:
    """Resamples [batch, samples] with one rate pair's plan (None: the identity)."""
    if plan is None:
        return waveform
    up, down = plan.up, plan.down
    hop_out, hop_in = plan.group * up, plan.group * down
    blocks_per_frame = -(-plan.frame // hop_in)  # J
    batch = tf.shape(waveform)[0]
    samples = tf.shape(waveform)[1]
    # soxr's length, round(samples * L / M), in int32 without overflow: samples = whole * M + part
    whole, part = samples // down, samples % down
    outputs = whole * up + (2 * part * up + down) // (2 * down)
    frames = (outputs + hop_out - 1) // hop_out  # Q
    total = (frames + blocks_per_frame - 1) * hop_in
    kept = tf.minimum(samples, total - plan.left_pad)  # later input is unused
    padded = tf.pad(waveform[:, :kept], [[0, 0], [plan.left_pad, total - plan.left_pad - kept]])
    blocks = tf.reshape(padded, [batch, frames + blocks_per_frame - 1, hop_in])
    last = plan.frame - (blocks_per_frame - 1) * hop_in
    pieces = [blocks[:, j : j + frames] for j in range(blocks_per_frame - 1)]
    pieces.append(blocks[:, blocks_per_frame - 1 : blocks_per_frame - 1 + frames, :last])
    framed = tf.reshape(tf.concat(pieces, axis=2), [-1, plan.frame])
    resampled = tf.matmul(framed, _filter_matrix(plan))
    resampled = tf.reshape(resampled, [batch, frames * hop_out])[:, :outputs]
    if plan.head is None:
        return resampled
    starts, ends = plan.head.shape
    head_input = waveform[:, :starts]
    head_input = tf.pad(head_input, [[0, 0], [0, starts - tf.shape(head_input)[1]]])
    correction = tf.matmul(head_input, tf.constant(plan.head))
    corrected = tf.minimum(ends, outputs)
    return tf.concat(
        [resampled[:, :corrected] + correction[:, :corrected], resampled[:, corrected:]], axis=1
    )
