"""The audio core on real files: chunk format and boundaries, the silence gate, the mp3 traps,
corrupt input, atomic output, duplicate detection and bounded memory."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from birdgrab import audio, files
from birdgrab.audio import (
    AudioError,
    pcm_fingerprint,
    probe,
    similarity,
)
from birdgrab.dataset.cutting import chunk_recording
from birdgrab.dataset.plan import SAME_RECORDING_SIMILARITY
from birdgrab.errors import BirdgrabError
from birdgrab.probe import AudioInfo
from tests.audio_fixtures import (
    MP3_FRAME_SAMPLES,
    add_cover_art,
    bird_song,
    chunk_in_child,
    mp3_bytes,
    mp3_frame_count,
    tone,
    vbr_trap_segments,
    wav_format_tag,
    without_first_frame,
    write_audio,
    write_long_wav,
    write_vbr_mp3_without_xing,
)


def _files(folder: Path) -> list[str]:
    """Every file in `folder`, hidden temporary files included."""
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- output format


def test_chunks_are_mono_16_bit_plain_wav_of_exactly_chunk_length(tmp_path):
    src = tmp_path / "stereo.wav"
    write_audio(src, np.stack([tone(25, 48000), tone(25, 48000, 440.0)], axis=1), 48000, "WAV")

    result = chunk_recording(src, tmp_path / "out", "xc-1", sample_rate=32000, chunk_s=10.0)

    assert _files(tmp_path / "out") == ["xc-1_0000.wav", "xc-1_0001.wav", "xc-1_0002.wav"]
    for chunk in result.chunks:
        path = tmp_path / "out" / chunk.file_name
        info = sf.info(path)
        assert (info.format, info.subtype, info.channels, info.samplerate) == ("WAV", "PCM_16", 1, 32000)
        assert info.frames == 320000
        assert wav_format_tag(path) == 1  # plain PCM, not WAVE_FORMAT_EXTENSIBLE
    assert (result.source_sample_rate, result.source_channels) == (48000, 2)


@pytest.mark.parametrize(
    ("seconds", "indices", "padded_s", "dropped_short"),
    [
        (25.0, [0, 1, 2], [0.0, 0.0, 5.0], 0),
        (22.9, [0, 1], [0.0, 0.0], 1),
        (2.5, [], [], 1),
        (20.0, [0, 1], [0.0, 0.0], 0),
    ],
)
def test_last_piece_is_padded_if_long_enough_else_dropped(
    tmp_path, seconds, indices, padded_s, dropped_short
):
    src = tmp_path / "tone.wav"
    write_audio(src, tone(seconds, 44100), 44100, "WAV")

    result = chunk_recording(src, tmp_path / "out", "rec", min_chunk_s=3.0)

    assert [chunk.index for chunk in result.chunks] == indices
    assert [chunk.padded_s for chunk in result.chunks] == pytest.approx(padded_s, abs=1e-3)
    assert [chunk.offset_s for chunk in result.chunks] == [10.0 * index for index in indices]
    assert result.dropped_short == dropped_short
    assert result.decoded_s == pytest.approx(seconds)
    assert _files(tmp_path / "out") == [f"rec_{index:04d}.wav" for index in indices]
    if padded_s and padded_s[-1]:
        last, _ = sf.read(tmp_path / "out" / result.chunks[-1].file_name)
        assert np.all(last[-int(padded_s[-1] * 32000) + 10 :] == 0.0)
        assert np.abs(last[: 4 * 32000]).max() > 0.4


# --------------------------------------------------------------------------- silence gate


def _loud_quiet_loud_silent(path: Path) -> None:
    rate = 32000
    write_audio(
        path,
        np.concatenate(
            [
                tone(10, rate, level=0.5),
                tone(10, rate, level=0.015),
                tone(10, rate),
                tone(10, rate, level=1e-4),
            ]
        ),
        rate,
        "WAV",
    )


def test_gate_drops_chunks_far_below_the_loudest_and_below_the_floor(tmp_path):
    src = tmp_path / "rec.wav"
    _loud_quiet_loud_silent(src)  # chunk 1 is 30 dB below chunk 0; chunk 3 is at -83 dBFS

    result = chunk_recording(src, tmp_path / "out", "rec", gate_db=25.0, floor_dbfs=-60.0)

    assert [chunk.index for chunk in result.chunks] == [0, 2]  # gaps keep names stable
    assert result.dropped_silent == 2
    assert _files(tmp_path / "out") == ["rec_0000.wav", "rec_0002.wav"]
    assert result.chunks[0].rms_dbfs == pytest.approx(-9.0, abs=0.1)  # a 0.5 sine


def test_floor_drops_near_silence_even_when_the_relative_gate_would_keep_it(tmp_path):
    src = tmp_path / "rec.wav"
    _loud_quiet_loud_silent(src)

    result = chunk_recording(src, tmp_path / "out", "rec", gate_db=90.0, floor_dbfs=-60.0)

    assert [chunk.index for chunk in result.chunks] == [0, 1, 2]


def test_no_gate_keeps_every_chunk(tmp_path):
    src = tmp_path / "rec.wav"
    _loud_quiet_loud_silent(src)

    result = chunk_recording(src, tmp_path / "out", "rec", gate_db=None)

    assert [chunk.index for chunk in result.chunks] == [0, 1, 2, 3]
    assert result.dropped_silent == 0


# --------------------------------------------------------------------------- formats and rates


@pytest.mark.parametrize(
    ("name", "rate", "channels"),
    [
        ("a.wav", 48000, 2),
        ("a.flac", 44100, 2),
        ("a.mp3", 44100, 2),
        ("a.ogg", 22050, 1),
        ("a.flac", 32000, 1),
    ],
)
def test_every_format_and_rate_chunks_with_a_tone_kept_at_its_pitch(tmp_path, name, rate, channels):
    samples = np.tile(tone(12, rate, 1000.0)[:, None], (1, channels))
    src = tmp_path / name
    if name.endswith(".mp3"):
        src.write_bytes(mp3_bytes(samples, rate))
    else:
        write_audio(src, samples, rate, name.rsplit(".", 1)[1].upper())

    result = chunk_recording(src, tmp_path / "out", "rec")

    assert (result.source_sample_rate, result.source_channels) == (rate, channels)
    assert result.decoded_s == pytest.approx(12.0, abs=0.06)
    assert [chunk.padded_s for chunk in result.chunks] == [0.0]  # the 2 s rest is too short
    chunk, chunk_rate = sf.read(tmp_path / "out" / "rec_0000.wav")
    spectrum = np.abs(np.fft.rfft(chunk * np.hanning(len(chunk))))
    assert np.fft.rfftfreq(len(chunk), 1 / chunk_rate)[spectrum.argmax()] == pytest.approx(1000.0, abs=0.5)


def test_the_file_type_comes_from_its_bytes_not_its_name(tmp_path):
    flac_named_mp3, mp3_named_wav = tmp_path / "flac.mp3", tmp_path / "mp3.wav"
    write_audio(flac_named_mp3, tone(5, 44100), 44100, "FLAC")
    true_s = write_vbr_mp3_without_xing(mp3_named_wav, vbr_trap_segments(30, 44100, seed=2), 44100)

    assert probe(flac_named_mp3) == AudioInfo("flac", 5.0, 44100, 1)
    assert probe(mp3_named_wav).format == "mp3"
    assert chunk_recording(flac_named_mp3, tmp_path / "out", "a").decoded_s == pytest.approx(5.0)
    assert chunk_recording(mp3_named_wav, tmp_path / "out", "b").decoded_s == pytest.approx(true_s, abs=0.1)


# --------------------------------------------------------------------------- mp3 traps


def test_vbr_mp3_without_xing_header_is_decoded_to_the_end(tmp_path):
    src = tmp_path / "vbr.mp3"
    true_s = write_vbr_mp3_without_xing(src, vbr_trap_segments(60, 44100, seed=1), 44100)
    assert len(sf.read(src)[0]) / 44100 < true_s - 20  # the trap is real here: libsndfile stops early

    result = chunk_recording(src, tmp_path / "out", "vbr", gate_db=None)

    assert result.decoded_s == pytest.approx(true_s, abs=0.1)
    assert [chunk.index for chunk in result.chunks] == [0, 1, 2, 3, 4, 5]
    assert probe(src).duration_s == pytest.approx(true_s, abs=0.1)
    assert sum(len(block) for block in audio.decode_blocks(src)) == round(true_s * 44100)


def test_mp3_with_big_id3_tag_gives_exactly_its_samples_and_no_stale_audio(tmp_path):
    song = bird_song(37.3, 44100, seed=3)
    plain, tagged = tmp_path / "plain.mp3", tmp_path / "tagged.mp3"
    plain.write_bytes(without_first_frame(mp3_bytes(song, 44100, bitrate_mode="CONSTANT")))
    shutil.copy(plain, tagged)
    add_cover_art(tagged, 200_000)
    true_s = mp3_frame_count(plain.read_bytes()) * MP3_FRAME_SAMPLES / 44100
    assert sum(len(block) for block in sf.blocks(tagged, 4096)) / 44100 > true_s + 5  # the trap is real

    from_plain = chunk_recording(plain, tmp_path / "plain", "rec")
    from_tagged = chunk_recording(tagged, tmp_path / "tagged", "rec")

    assert from_tagged.decoded_s == from_plain.decoded_s == pytest.approx(true_s, abs=1e-9)
    assert [chunk.index for chunk in from_tagged.chunks] == [0, 1, 2, 3]
    for chunk in from_plain.chunks:
        assert (tmp_path / "tagged" / chunk.file_name).read_bytes() == (
            tmp_path / "plain" / chunk.file_name
        ).read_bytes()
    assert probe(tagged).duration_s == pytest.approx(true_s, abs=1e-9)


# --------------------------------------------------------------------------- corrupt input


def _html_page(path: Path) -> None:
    path.write_text("<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head></html>\n")


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())


def _truncated_flac(path: Path) -> None:
    write_audio(path, bird_song(20, 44100, seed=1), 44100, "FLAC")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _header_only_flac(path: Path) -> None:
    write_audio(path, tone(1, 44100), 44100, "FLAC")
    path.write_bytes(path.read_bytes()[:30])


def _tag_without_frames(path: Path) -> None:
    path.write_bytes(b"")
    add_cover_art(path, 5000)


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("page.mp3", _html_page, "not audio: looks like an HTML page"),
        ("noise.wav", _random_bytes, "not audio: unknown file type"),
        ("cut.flac", _truncated_flac, "corrupt flac: decoding failed after"),
        ("head.flac", _header_only_flac, "corrupt flac: unreadable header"),
        ("tag.mp3", _tag_without_frames, "corrupt mp3: no valid frames"),
    ],
)
def test_corrupt_or_non_audio_input_raises_audio_error_and_leaves_nothing(tmp_path, name, make, reason):
    src = tmp_path / name
    make(src)

    with pytest.raises(AudioError) as raised:
        chunk_recording(src, tmp_path / "out", "rec")

    assert raised.value.reason.startswith(reason)
    assert isinstance(raised.value, BirdgrabError)
    assert pickle.loads(pickle.dumps(raised.value)).reason == raised.value.reason  # survives worker processes
    assert _files(tmp_path / "out") == []


def test_probe_rejects_what_the_downloader_must_not_cache(tmp_path):
    _html_page(tmp_path / "page.mp3")
    _random_bytes(tmp_path / "noise.bin")
    (tmp_path / "empty.mp3").write_bytes(b"")

    for name in ("page.mp3", "noise.bin", "empty.mp3"):
        with pytest.raises(AudioError, match="not audio"):
            probe(tmp_path / name)


def test_a_failure_midway_leaves_no_chunk_and_no_temporary_file(tmp_path, monkeypatch):
    src = tmp_path / "rec.wav"
    write_audio(src, tone(45, 32000), 32000, "WAV")
    real_stage, calls = files.StagedFiles.stage, []

    def stage_then_fail_on_third(self, path, data):
        calls.append(path)
        if len(calls) == 3:  # the disk fills while the third chunk is written: half of it is on disk
            real_stage(self, path, data[: len(data) // 2])
            raise OSError(28, "No space left on device")
        real_stage(self, path, data)

    monkeypatch.setattr(files.StagedFiles, "stage", stage_then_fail_on_third)

    with pytest.raises(OSError, match="No space"):
        chunk_recording(src, tmp_path / "out", "rec")

    assert len(calls) == 3
    assert _files(tmp_path / "out") == []


def test_a_chunk_file_is_the_wav_soundfile_writes_for_the_same_samples(tmp_path):
    """The WAV built in memory is byte for byte libsndfile's 16-bit PCM WAV (the format readers know)."""
    src = tmp_path / "rec.wav"
    samples = tone(25, 32000)
    write_audio(src, samples, 32000, "WAV")

    result = chunk_recording(src, tmp_path / "out", "rec")

    assert [c.padded_s for c in result.chunks] == [0.0, 0.0, 5.0]
    for chunk in result.chunks:
        start = round(chunk.offset_s * 32000)
        expected = np.zeros(320000, dtype=np.int16)
        window = sf.read(src, dtype="int16", start=start, stop=start + 320000)[0]
        expected[: len(window)] = window
        sf.write(tmp_path / "reference.wav", expected, 32000, format="WAV", subtype="PCM_16")
        assert (tmp_path / "out" / chunk.file_name).read_bytes() == (tmp_path / "reference.wav").read_bytes()


# --------------------------------------------------------------------------- duplicates


def test_fingerprint_matches_the_same_sound_reencoded_and_tells_instances_apart(tmp_path):
    songs = {seed: bird_song(30, 44100, seed=seed) for seed in (1, 2)}
    for seed, song in songs.items():
        (tmp_path / f"{seed}.mp3").write_bytes(mp3_bytes(song, 44100))
        write_audio(tmp_path / f"{seed}.wav", soxr.resample(song, 44100, 22050), 22050, "WAV")
        stereo = np.stack([song, 0.7 * song], axis=1)
        write_audio(tmp_path / f"{seed}.flac", soxr.resample(stereo, 44100, 48000), 48000, "FLAC")
    prints = {path.name: pcm_fingerprint(path) for path in sorted(tmp_path.iterdir())}

    for seed in (1, 2):
        for a, b in [("mp3", "wav"), ("mp3", "flac"), ("wav", "flac")]:
            assert similarity(prints[f"{seed}.{a}"], prints[f"{seed}.{b}"]) >= SAME_RECORDING_SIMILARITY, (
                seed,
                a,
                b,
            )
    for a in ("mp3", "wav", "flac"):
        for b in ("mp3", "wav", "flac"):
            assert similarity(prints[f"1.{a}"], prints[f"2.{b}"]) < 0.5, (a, b)
    assert prints["1.wav"].duration_s == pytest.approx(30.0)


@pytest.mark.slow
def test_an_hour_of_48_khz_stereo_chunks_in_bounded_memory(tmp_path):
    src = tmp_path / "hour.wav"
    write_long_wav(src, 3600)  # 691 MB

    chunks, peak_rss_mb = chunk_in_child(src, tmp_path / "out")

    assert chunks == 360
    assert peak_rss_mb < 300
