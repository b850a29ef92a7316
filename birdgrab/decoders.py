"""Decoding: every file `probe` accepts, as float32 blocks at its native rate, sample for sample as FFmpeg.

The decoder stack is PyAV (FFmpeg's demuxers and decoders in a self-contained wheel), chosen on
measurements (BENCHMARKS.md): it reads every kind of file in the real-encoder corpus to FFmpeg's
exact sample count, where libsndfile and miniaudio refuse or misread a third of them (MPEG-2.5,
Layer II, AAC, Opus, RF64, WAVs with unknown sizes, FLAC without a total), and it decodes mp3 as
fast as miniaudio. The decoder reads only the bytes `probe` located as audio, so junk before the
first frame and ID3v1/APEv2/Lyrics tails are never decoded, and a LAME/Info frame is always where
FFmpeg looks for it (gapless: encoder delay and padding removed).

`decode_blocks(path)` and `AudioDecoder.blocks()` are what the chunker and the fingerprints read;
`mono_blocks` mixes to mono and resamples with soxr HQ. Memory is bounded by one block.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.container
import numpy as np
import soxr

from birdgrab.containers import open_container
from birdgrab.probe import DEMUXERS, AudioError, AudioFormat, AudioInfo, probe

BLOCK_FRAMES = 1 << 16
"""Frames decoded per block: large enough that per-block Python work is noise, small enough to be cheap."""

# Decoded sample formats numpy turns into float32 with FFmpeg's own arithmetic (libswresample's
# audioconvert: integers times 2^-(bits-1), unsigned 8-bit centred first, doubles rounded), so the
# samples are bit for bit what a conversion through FFmpeg gives: (dtype, scale, offset).
_TO_FLOAT: dict[str, tuple[type[np.generic], float, float]] = {
    "flt": (np.float32, 1.0, 0.0),
    "dbl": (np.float64, 1.0, 0.0),
    "s16": (np.int16, 1.0 / (1 << 15), 0.0),
    "s32": (np.int32, 1.0 / (1 << 31), 0.0),
    "u8": (np.uint8, 1.0 / (1 << 7), -128.0),
}


def _frames(container: av.container.InputContainer) -> Iterator[av.AudioFrame]:
    """Decoded frames of the first audio stream (the demuxer's last, empty packet flushes the decoder).

    A damaged packet is skipped, as FFmpeg's command line does; the length check catches real loss.
    """
    for packet in container.demux(container.streams.audio[0]):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            continue


class _Blocks:
    """Decoded frames in; packed float32 blocks of exactly `block_frames` out, the last one shorter.

    Frames in the probed rate and channel layout (all of them, but in a concatenated file that
    changes mid-stream) queue in their decoded format in FFmpeg's sample FIFO, and each block is
    converted at once with numpy: a converter call per ~1,152-sample frame cost more than the
    decoding itself. A frame in another rate or layout, or a format numpy does not convert, goes
    through FFmpeg's converter to the probed rate and layout (as FFmpeg's command line does).
    """

    def __init__(self, info: AudioInfo, layout: av.AudioLayout, block_frames: int):
        self._channels, self._rate, self._layout = info.channels, info.sample_rate, layout
        self._block_frames = block_frames
        self._same_layouts = {layout.name, f"{info.channels} channels"}  # an unordered layout is the default
        self._fifo: av.AudioFifo | None = None  # the current run of frames in one format
        self._fifo_layout = ""
        self._converter: tuple[tuple[str, str, int], av.AudioResampler] | None = None
        self._earlier: list[np.ndarray] = []  # converted samples of runs that ended, in order
        self._earlier_frames = 0

    def add(self, frame: av.AudioFrame) -> None:
        if self._fifo is not None and frame.layout.name == self._fifo_layout:
            frame.pts = None  # FFmpeg's gapless trimming leaves gaps in pts the FIFO would refuse
            try:
                self._fifo.write(frame)  # refuses a frame in another format or rate
                return
            except ValueError:
                pass
        self._end_run()
        if (
            frame.sample_rate == self._rate
            and frame.layout.name in self._same_layouts
            and frame.format.packed.name in _TO_FLOAT
        ):
            self._flush_converter()
            self._fifo, self._fifo_layout = av.AudioFifo(), frame.layout.name
            frame.pts = None
            self._fifo.write(frame)
        else:
            self._through_converter(frame)

    def next_block(self) -> np.ndarray | None:
        """A whole block, if the frames added so far make one."""
        needed = self._block_frames - self._earlier_frames
        if needed <= 0:
            return self._split_earlier()
        if self._fifo is None or self._fifo.samples < needed:
            return None
        samples = self._as_float(self._fifo.read(needed))
        if not self._earlier:
            return samples
        block = np.concatenate([*self._earlier, samples])
        self._earlier, self._earlier_frames = [], 0
        return block

    def finish(self) -> Iterator[np.ndarray]:
        """The last blocks, once every frame was added."""
        self._end_run()
        self._flush_converter()
        while self._earlier_frames >= self._block_frames:
            yield self._split_earlier()
        if self._earlier:
            yield np.concatenate(self._earlier)

    def _split_earlier(self) -> np.ndarray:
        samples = np.concatenate(self._earlier)
        block, rest = samples[: self._block_frames], samples[self._block_frames :]
        self._earlier, self._earlier_frames = ([rest] if len(rest) else []), len(rest)
        return block

    def _end_run(self) -> None:
        """The FIFO's frames join the converted samples: the next frames are in another format."""
        if self._fifo is not None and self._fifo.samples:
            self._keep(self._as_float(self._fifo.read()))
        self._fifo = None

    def _as_float(self, frame: av.AudioFrame) -> np.ndarray:
        """A frame read from the FIFO as (frames, channels) float32, converted as FFmpeg converts."""
        audio_format = frame.format
        dtype, scale, offset = _TO_FLOAT[audio_format.packed.name]
        count = frame.samples
        if audio_format.is_planar:
            raw = np.stack([np.frombuffer(plane, dtype, count) for plane in frame.planes], axis=1)
        else:
            raw = np.frombuffer(frame.planes[0], dtype, count * self._channels).reshape(count, -1)
        samples = raw.astype(np.float32, copy=not audio_format.is_planar)  # a copy, never the frame's memory
        if offset:
            samples += np.float32(offset)
        if scale != 1.0:
            samples *= np.float32(scale)
        return samples

    def _through_converter(self, frame: av.AudioFrame) -> None:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self._converter is not None and self._converter[0] != key:
            self._flush_converter()
        if self._converter is None:
            resampler = av.AudioResampler(format="flt", layout=self._layout, rate=self._rate)
            self._converter = (key, resampler)
        for converted in self._converter[1].resample(frame):
            self._keep(self._as_float(converted))

    def _flush_converter(self) -> None:
        if self._converter is not None:
            for converted in self._converter[1].resample(None):
                self._keep(self._as_float(converted))
            self._converter = None

    def _keep(self, samples: np.ndarray) -> None:
        self._earlier.append(samples)
        self._earlier_frames += len(samples)


@dataclass
class AudioDecoder:
    """A file opened for streaming decode at its native sample rate; `frames_decoded` counts as it goes."""

    path: Path
    info: AudioInfo
    frames_decoded: int = field(default=0, init=False)

    @property
    def format(self) -> AudioFormat:
        return self.info.format

    @property
    def sample_rate(self) -> int:
        return self.info.sample_rate

    @property
    def channels(self) -> int:
        return self.info.channels

    def blocks(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """Yield float32 arrays of shape (frames, channels), every frame of the file, in order.

        Raises `AudioError` when the file cannot be decoded, or decodes to less than its header
        promised (a truncated file).
        """
        self.frames_decoded = 0
        info = self.info
        try:
            with open_container(
                self.path, info.audio_start, info.audio_end, DEMUXERS[info.format]
            ) as container:
                if not container.streams.audio:
                    raise AudioError(f"not audio: {info.format} file without an audio track", self.path)
                # The probed rate and channel count: a mid-stream change (a concatenated mp3) is
                # converted, so every block has the shape the caller was promised.
                layout = av.AudioLayout(
                    {1: "mono", 2: "stereo"}.get(info.channels) or container.streams.audio[0].layout
                )
                blocks = _Blocks(info, layout, block_frames)
                for frame in _frames(container):
                    blocks.add(frame)
                    while (block := blocks.next_block()) is not None:
                        self.frames_decoded += len(block)
                        yield block
                for block in blocks.finish():
                    self.frames_decoded += len(block)
                    yield block
        except av.error.FFmpegError as exc:
            decoded_s = self.frames_decoded / info.sample_rate
            raise AudioError(
                f"corrupt {info.format}: decoding failed after {decoded_s:.1f} s", self.path
            ) from exc
        self._check_length()

    def _check_length(self) -> None:
        """A declared length (FLAC's total, a WAV's data size) not reached means the file was cut short."""
        info = self.info
        decoded_s = self.frames_decoded / info.sample_rate
        if self.frames_decoded == 0:
            raise AudioError(f"corrupt {info.format}: no audio decoded", self.path)
        if not info.duration_estimated and decoded_s < info.duration_s - 0.001 and info.format == "flac":
            raise AudioError(
                f"corrupt {info.format}: decoding failed after {decoded_s:.1f} s of {info.duration_s:.1f} s",
                self.path,
            )


def open_decoder(path: Path | str) -> AudioDecoder:
    """Probe `path` (raising `AudioError` if it is not audio) and get it ready to decode block by block."""
    return AudioDecoder(Path(path), probe(path))


def decode_blocks(path: Path | str, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Every frame of `path` as float32 blocks of shape (frames, channels) at its native sample rate.

    >>> next(decode_blocks("XC123456.mp3")).shape  # doctest: +SKIP
    (65536, 2)
    """
    return open_decoder(path).blocks(block_frames)


def _mono(block: np.ndarray) -> np.ndarray:
    """The mean of the channels, as a matrix-vector product: numpy's mean over a short axis is far slower."""
    channels = block.shape[1]
    if channels == 1:
        return block[:, 0]
    return block @ np.full(channels, 1.0 / channels, dtype=np.float32)


def mono_blocks(decoder: AudioDecoder, sample_rate: int) -> Iterator[np.ndarray]:
    """The decoder's audio mixed to mono (mean of the channels) and resampled to `sample_rate` with soxr HQ."""
    if sample_rate == decoder.sample_rate:
        yield from (_mono(block) for block in decoder.blocks())
        return
    resampler = soxr.ResampleStream(decoder.sample_rate, sample_rate, 1, dtype="float32", quality="HQ")
    for block in decoder.blocks():
        yield resampler.resample_chunk(_mono(block))
    yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
