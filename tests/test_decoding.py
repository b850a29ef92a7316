"""Sniffing, lengths and decoding against files made by real encoders (tests/fixtures/audio).

The truth is FFmpeg's own decode, recorded in reference.json when the corpus was made: every kind
must decode to its exact sample count, with content lined up with the source at lag 0 (after the
codec delay the reference decode keeps), and probe must give that length or say it estimated.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soxr

from birdgrab.decoders import decode_blocks
from birdgrab.probe import AudioError, probe
from tests.real_audio import FIXTURES, corpus, lag0_correlation

KINDS = corpus()
EDITED = sorted(name for name, kind in KINDS.items() if kind.edit)


def _decode(path) -> np.ndarray:
    return np.concatenate(list(decode_blocks(path, block_frames=4096)))


def _content_correlation(decoded: np.ndarray, kind) -> float:
    """Lag-0 correlation of the decode (mono) with the source, shifted by the delay the reference keeps."""
    source = kind.source().mean(axis=1)
    if kind.sample_rate != kind.source_rate:
        source = soxr.resample(source, kind.source_rate, kind.sample_rate, quality="HQ")
    lag = kind.lag
    return lag0_correlation(decoded.mean(axis=1)[max(lag, 0) :], source[max(-lag, 0) :])


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_decodes_to_the_reference_samples_and_probe_tells_its_length(tmp_path, name):
    kind = KINDS[name]
    path = kind.write(tmp_path)  # named `.part`, as a download is while it is verified

    info = probe(path)
    decoded = _decode(path)

    assert (info.sample_rate, info.channels) == (kind.sample_rate, kind.channels)
    assert decoded.shape == (kind.frames, kind.channels)
    assert decoded.dtype == np.float32
    if info.duration_estimated:
        assert info.format in ("m4a", "aac")  # AAC's container does not count the padding it decodes
        assert info.duration_s == pytest.approx(kind.frames / kind.sample_rate, rel=0.02)
    else:
        assert abs(info.duration_s - kind.frames / kind.sample_rate) <= 0.001
    assert _content_correlation(decoded, kind) >= kind.correlation - 0.002


@pytest.mark.parametrize("name", EDITED)
def test_tags_junk_and_header_quirks_change_no_sample(tmp_path, name):
    """Leading zeros or junk, stacked ID3v2 tags, ID3v1/APEv2/Lyrics tails, a FLAC behind an ID3 tag,
    WAV sizes of 0 or 0xFFFFFFFF, BW64: the same samples as the untouched file, none more, none fewer."""
    kind = KINDS[name]
    base = tmp_path / "base.part"
    base.write_bytes((FIXTURES / kind.base).read_bytes())
    edited = kind.write(tmp_path)

    assert np.array_equal(_decode(edited), _decode(base))
    assert probe(edited).duration_s == probe(base).duration_s


def test_ffmpeg_itself_misses_the_lame_tag_behind_junk_and_birdgrab_does_not():
    """The reference for junk-prefixed mp3s is the clean file's decode: FFmpeg keeps the encoder
    delay and a frame of silence there (51 ms and more late), birdgrab finds the LAME tag."""
    for name in ("mp3_leading_zeros", "mp3_leading_junk"):
        kind = KINDS[name]
        assert kind.ffmpeg_frames > kind.frames + kind.sample_rate * 0.05


def _layer1_stream(frames: int) -> bytes:
    """MPEG-1 Layer I at 44.1 kHz, 128 kbit/s, mono: frames of silence (no encoder writes layer I any more)."""
    header = bytes([0xFF, 0xFF, 0x40, 0xC0])
    return (header + bytes((12 * 128000 // 44100) * 4 - 4)) * frames


def test_mpeg1_layer1_is_sniffed_by_frame_sync_and_decoded(tmp_path):
    path = tmp_path / "layer1.part"
    path.write_bytes(bytes(700) + _layer1_stream(20))

    info = probe(path)

    assert (info.format, info.sample_rate, info.channels) == ("mp1", 44100, 1)
    assert info.duration_s == 20 * 384 / 44100
    assert len(_decode(path)) == 20 * 384


def test_a_false_frame_sync_in_junk_is_not_audio(tmp_path):
    """Two bytes that look like a frame header, in a file that is no stream of frames, are not audio."""
    junk = bytearray(np.random.default_rng(3).integers(0, 0xE0, 20_000, dtype=np.uint8).tobytes())
    junk[5000:5004] = bytes.fromhex("fffb9064")
    path = tmp_path / "junk.part"
    path.write_bytes(bytes(junk))

    with pytest.raises(AudioError, match="not audio: unknown file type"):
        probe(path)


def test_a_wav_that_holds_no_samples_is_refused(tmp_path):
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    path = tmp_path / "empty.part"
    path.write_bytes(
        b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data\0\0\0\0"
    )

    with pytest.raises(AudioError, match="holds 0 samples"):
        probe(path)
