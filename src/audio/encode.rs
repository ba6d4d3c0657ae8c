//! Audio encoders for responses and files (feature `codecs`): WAV, raw PCM, FLAC, MP3 and
//! Ogg Opus, the `response_format` values of OpenAI's speech API but `aac`.
//!
//! Input is mono `f32` at any rate the codec takes, nominally in `[-1, 1]`; every format
//! quantises it to 16 bits with [`to_i16`] first (clamped to `[-1, 1]`, NaN as 0), so
//! out-of-range and non-finite samples never fail or panic.
//!
//! [`AudioEncoder`] works incrementally: [`AudioEncoder::push`] returns the bytes that can be
//! sent now (the container header comes with the first call), [`AudioEncoder::finish`] the
//! rest. [`encode`] makes a whole file in one call, with what only a complete file can carry.
//!
//! | format | stream ([`AudioEncoder`]) | whole file ([`encode`]) |
//! |---|---|---|
//! | wav | [`wav_header`] of unknown length (`0xFFFFFFFF` sizes), then 16-bit PCM as pushed | [`encode_wav`]: real sizes |
//! | pcm | raw s16le, no header | the same |
//! | flac | `fLaC` + STREAMINFO (total samples 0 = unknown, MD5 zero = unchecked), then a FLAC frame per [`FLAC_BLOCK_SIZE`] samples (`flacenc`) | the same frames; STREAMINFO with total samples, frame sizes and MD5 |
//! | mp3 | MPEG audio frames as LAME makes them: CBR [`MP3_BITRATE_KBPS`] kbit/s mono (24 kHz: MPEG-2 Layer III), no tag | the same audio, with LAME's Info tag in the first frame (encoder delay and padding: decoders that read it return exactly the input length) |
//! | opus | Ogg Opus (RFC 7845): OpusHead, OpusTags, then 20 ms packets at [`OPUS_BITRATE`] bit/s; a `push` that completes a frame ends a page (at most [`OPUS_PACKETS_PER_PAGE`] packets), the last page has the end-of-stream flag and a granule position that trims the padding | the same as a stream |
//!
//! Sample rates: wav and pcm any rate > 0; flac up to 96 kHz (`flacenc`'s bound); mp3 the
//! MPEG rates 8, 11.025, 12, 16, 22.05, 24, 32, 44.1 and 48 kHz; opus 8, 12, 16, 24 and
//! 48 kHz (its input rates, so 24 kHz needs no resampling). Others are refused with
//! `InvalidArgument` naming `sample_rate`.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::ptr::NonNull;

use flacenc::component::{BitRepr, Stream, StreamInfo};
use flacenc::error::Verify;
use flacenc::source::{Context, Fill, FrameBuf};
use ogg::writing::{PacketWriteEndInfo, PacketWriter};

use crate::audio::wav::{encode_wav, pcm16_le, to_i16, wav_header};
use crate::error::{Error, Result};

/// An output audio format (OpenAI's `response_format` values but `aac`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioFormat {
    /// 16-bit PCM mono WAV.
    Wav,
    /// Raw signed 16-bit little-endian mono samples, no header.
    Pcm,
    /// FLAC, 16 bits, mono (lossless).
    Flac,
    /// MPEG audio Layer III, CBR [`MP3_BITRATE_KBPS`] kbit/s, mono.
    Mp3,
    /// Opus in Ogg (RFC 7845), [`OPUS_BITRATE`] bit/s, mono.
    Opus,
}

/// Samples per FLAC frame (the reference encoder's default; 171 ms at 24 kHz).
pub const FLAC_BLOCK_SIZE: usize = 4096;
/// MP3 bit rate in kbit/s (constant): enough for clear mono speech at 24 kHz.
pub const MP3_BITRATE_KBPS: u32 = 64;
/// Opus bit rate in bit/s (variable). At 48 kbit/s libopus codes 24 kHz mono in CELT mode
/// throughout (33 dB waveform SNR on the test signal of `tests/audio_encode.rs`); at 32 kbit/s
/// it switches between hybrid and CELT modes (10 dB on the same signal).
pub const OPUS_BITRATE: i32 = 48_000;
/// Most 20 ms Opus packets in one Ogg page (1 s): a large push still flushes every second.
pub const OPUS_PACKETS_PER_PAGE: usize = 50;

const FLAC_RATE_MAX: u32 = 96_000;
const MP3_RATES: [u32; 9] = [
    8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000,
];
const OPUS_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];
/// Serial number of the one logical Ogg stream: fixed, so that output is deterministic.
const OGG_SERIAL: u32 = 0x4342_584f;
/// Largest Opus packet asked for (libopus's recommended output buffer size).
const OPUS_MAX_PACKET: usize = 4000;
/// Samples handed to LAME per call (its sample count is a C `int`).
const MP3_CHUNK: usize = 1 << 20;

impl AudioFormat {
    /// Every format, in the order of [`AudioFormat::name`]'s documentation.
    pub const ALL: [AudioFormat; 5] = [
        AudioFormat::Wav,
        AudioFormat::Pcm,
        AudioFormat::Flac,
        AudioFormat::Mp3,
        AudioFormat::Opus,
    ];

    /// The format named `name`: `"wav"`, `"pcm"`, `"flac"`, `"mp3"` or `"opus"`, exactly
    /// (lowercase). Anything else (`"aac"`, `"WAV"`, ...) is `InvalidArgument` naming
    /// `response_format` and listing the supported names.
    pub fn from_name(name: &str) -> Result<AudioFormat> {
        if let Some(format) = AudioFormat::ALL.into_iter().find(|f| f.name() == name) {
            return Ok(format);
        }
        let supported = AudioFormat::ALL.map(AudioFormat::name).join(", ");
        let hint = if AudioFormat::ALL
            .iter()
            .any(|f| f.name().eq_ignore_ascii_case(name))
        {
            " (names are lowercase)"
        } else {
            ""
        };
        Err(Error::invalid_argument(
            "response_format",
            format!("`{name}` is not supported{hint}; supported formats: {supported}"),
        ))
    }

    /// The lowercase name ([`AudioFormat::from_name`]'s input).
    pub fn name(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Pcm => "pcm",
            AudioFormat::Flac => "flac",
            AudioFormat::Mp3 => "mp3",
            AudioFormat::Opus => "opus",
        }
    }

    /// The MIME type: `audio/wav`, `audio/pcm` (s16le mono; the rate is not in the type,
    /// the caller says it, e.g. `audio/pcm;rate=24000`), `audio/flac`, `audio/mpeg`,
    /// `audio/ogg` (Opus in Ogg, as OpenAI returns it).
    pub fn content_type(self) -> &'static str {
        match self {
            AudioFormat::Wav => "audio/wav",
            AudioFormat::Pcm => "audio/pcm",
            AudioFormat::Flac => "audio/flac",
            AudioFormat::Mp3 => "audio/mpeg",
            AudioFormat::Opus => "audio/ogg",
        }
    }

    /// The file extension, without the dot (the same as [`AudioFormat::name`]).
    pub fn extension(self) -> &'static str {
        self.name()
    }

    /// The format a file name's extension asks for (ASCII case ignored): `wav`, `pcm` or
    /// `raw`, `flac`, `mp3`, `opus` or `ogg`; `None` for any other or no extension.
    pub fn from_extension(path: &Path) -> Option<AudioFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "wav" => Some(AudioFormat::Wav),
            "pcm" | "raw" => Some(AudioFormat::Pcm),
            "flac" => Some(AudioFormat::Flac),
            "mp3" => Some(AudioFormat::Mp3),
            "opus" | "ogg" => Some(AudioFormat::Opus),
            _ => None,
        }
    }

    /// `Ok` when this format can be encoded at `sample_rate`, else `InvalidArgument`
    /// naming `sample_rate` and what the format takes.
    pub fn check_sample_rate(self, sample_rate: u32) -> Result<()> {
        let ok = match self {
            AudioFormat::Wav | AudioFormat::Pcm => sample_rate > 0,
            AudioFormat::Flac => (1..=FLAC_RATE_MAX).contains(&sample_rate),
            AudioFormat::Mp3 => MP3_RATES.contains(&sample_rate),
            AudioFormat::Opus => OPUS_RATES.contains(&sample_rate),
        };
        if ok {
            return Ok(());
        }
        let list = |rates: &[u32]| {
            rates
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let takes = match self {
            AudioFormat::Wav | AudioFormat::Pcm => "a rate > 0 Hz".to_string(),
            AudioFormat::Flac => format!("1 to {FLAC_RATE_MAX} Hz"),
            AudioFormat::Mp3 => format!("one of {} Hz", list(&MP3_RATES)),
            AudioFormat::Opus => format!("one of {} Hz", list(&OPUS_RATES)),
        };
        Err(Error::invalid_argument(
            "sample_rate",
            format!("{sample_rate} Hz cannot be encoded as {self}; it takes {takes}"),
        ))
    }
}

impl fmt::Display for AudioFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A whole file in one call. WAV is [`encode_wav`] (real sizes in the header); FLAC's
/// STREAMINFO carries the total samples, frame sizes and MD5; MP3 carries LAME's Info tag
/// (length, encoder delay and padding); PCM and Opus equal [`AudioEncoder::push`] of all
/// samples then [`AudioEncoder::finish`].
pub fn encode(format: AudioFormat, sample_rate: u32, samples: &[f32]) -> Result<Vec<u8>> {
    format.check_sample_rate(sample_rate)?;
    match format {
        AudioFormat::Wav => encode_wav(samples, sample_rate),
        AudioFormat::Flac => {
            let mut flac = FlacEncoder::new(sample_rate)?;
            let mut out = flac.push(samples)?;
            out.extend(flac.finish()?);
            let header = flac.header(true)?;
            out[..header.len()].copy_from_slice(&header);
            Ok(out)
        }
        AudioFormat::Mp3 => {
            let mut mp3 = Mp3Encoder::new(sample_rate, true)?;
            let mut out = mp3.push(samples)?;
            out.extend(mp3.finish()?);
            mp3.write_info_tag(&mut out)?;
            Ok(out)
        }
        AudioFormat::Pcm | AudioFormat::Opus => {
            let mut encoder = AudioEncoder::new(format, sample_rate)?;
            let mut out = encoder.push(samples)?;
            out.extend(encoder.finish()?);
            Ok(out)
        }
    }
}

/// Incremental encoder of mono `f32` samples (nominally in `[-1, 1]`, clamped like
/// [`to_i16`]) at one sample rate into one [`AudioFormat`].
pub struct AudioEncoder {
    format: AudioFormat,
    sample_rate: u32,
    /// Whether the first `push` (which carries the container header) has happened.
    started: bool,
    state: State,
}

enum State {
    Wav,
    Pcm,
    Flac(Box<FlacEncoder>),
    Mp3(Mp3Encoder),
    Opus(Box<OpusStream>),
}

impl fmt::Debug for AudioEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AudioEncoder")
            .field("format", &self.format)
            .field("sample_rate", &self.sample_rate)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl AudioEncoder {
    /// An encoder of `format` at `sample_rate` Hz; `InvalidArgument` (naming `sample_rate`)
    /// for a rate the format cannot take.
    pub fn new(format: AudioFormat, sample_rate: u32) -> Result<AudioEncoder> {
        format.check_sample_rate(sample_rate)?;
        let state = match format {
            AudioFormat::Wav => State::Wav,
            AudioFormat::Pcm => State::Pcm,
            AudioFormat::Flac => State::Flac(Box::new(FlacEncoder::new(sample_rate)?)),
            AudioFormat::Mp3 => State::Mp3(Mp3Encoder::new(sample_rate, false)?),
            AudioFormat::Opus => State::Opus(Box::new(OpusStream::new(sample_rate)?)),
        };
        Ok(AudioEncoder {
            format,
            sample_rate,
            started: false,
            state,
        })
    }

    /// The format being written.
    pub fn format(&self) -> AudioFormat {
        self.format
    }

    /// The input sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Encodes `samples` and returns the bytes ready to send now, the container header
    /// before the first audio (so the first call returns at least the header, for every
    /// format but pcm and mp3, which have none). Codecs that work on frames keep what does
    /// not fill one (FLAC: [`FLAC_BLOCK_SIZE`] samples, Opus: 20 ms, MP3: LAME's buffer)
    /// for the next call, so this may return nothing.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>> {
        let first = !self.started;
        self.started = true;
        match &mut self.state {
            State::Wav => {
                let mut out = Vec::with_capacity(44 + 2 * samples.len());
                if first {
                    out.extend_from_slice(&wav_header(self.sample_rate, None));
                }
                out.extend(pcm16_le(samples));
                Ok(out)
            }
            State::Pcm => Ok(pcm16_le(samples)),
            State::Flac(flac) => flac.push(samples),
            State::Mp3(mp3) => mp3.push(samples),
            State::Opus(opus) => opus.push(samples),
        }
    }

    /// Flushes everything (pads the last frame, ends the stream) and returns the remaining
    /// bytes. After no `push` at all this is a whole valid file of no audio.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        let mut out = if self.started {
            Vec::new()
        } else {
            self.push(&[])?
        };
        match &mut self.state {
            State::Wav | State::Pcm => {}
            State::Flac(flac) => out.extend(flac.finish()?),
            State::Mp3(mp3) => out.extend(mp3.finish()?),
            State::Opus(opus) => out.extend(opus.finish()?),
        }
        Ok(out)
    }
}

/// FLAC written frame by frame with `flacenc`: fixed blocks of [`FLAC_BLOCK_SIZE`].
struct FlacEncoder {
    config: flacenc::error::Verified<flacenc::config::Encoder>,
    info: StreamInfo,
    /// Samples that do not fill a block yet.
    pending: Vec<i32>,
    frame: FrameBuf,
    /// MD5 and count of the samples encoded so far.
    context: Context,
    frames: usize,
    /// Smallest and largest frame in bytes so far.
    frame_bytes: Option<(usize, usize)>,
    header_written: bool,
}

fn flac_error(e: impl fmt::Display) -> Error {
    Error::internal(format!("FLAC encoding failed: {e}"))
}

impl FlacEncoder {
    fn new(sample_rate: u32) -> Result<FlacEncoder> {
        let mut config = flacenc::config::Encoder::default();
        config.block_size = FLAC_BLOCK_SIZE;
        let config = config.into_verified().map_err(|(_, e)| flac_error(e))?;
        let mut info = StreamInfo::new(sample_rate as usize, 1, 16).map_err(flac_error)?;
        info.set_block_sizes(FLAC_BLOCK_SIZE, FLAC_BLOCK_SIZE)
            .map_err(flac_error)?;
        // Unknown until the end: 0 is "unknown" for the frame sizes.
        info.set_frame_sizes(0, 0).map_err(flac_error)?;
        Ok(FlacEncoder {
            config,
            info,
            pending: Vec::with_capacity(FLAC_BLOCK_SIZE),
            frame: FrameBuf::with_size(1, FLAC_BLOCK_SIZE).map_err(flac_error)?,
            context: Context::new(16, 1),
            frames: 0,
            frame_bytes: None,
            header_written: false,
        })
    }

    /// `fLaC` and the STREAMINFO block (the only metadata block): of a stream of unknown
    /// length, or (`complete`) with the total samples, frame sizes and MD5 so far.
    fn header(&self, complete: bool) -> Result<Vec<u8>> {
        let mut info = self.info.clone();
        if complete {
            info.set_total_samples(self.context.total_samples());
            info.set_md5_digest(&self.context.md5_digest());
            if let Some((min, max)) = self.frame_bytes {
                info.set_frame_sizes(min, max).map_err(flac_error)?;
            }
        }
        let mut sink = flacenc::bitsink::ByteSink::new();
        Stream::with_stream_info(info)
            .write(&mut sink)
            .map_err(flac_error)?;
        Ok(sink.into_inner())
    }

    fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        if !self.header_written {
            out = self.header(false)?;
            self.header_written = true;
        }
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (FLAC_BLOCK_SIZE - self.pending.len()).min(rest.len());
            self.pending
                .extend(rest[..take].iter().map(|&x| i32::from(to_i16(x))));
            rest = &rest[take..];
            if self.pending.len() == FLAC_BLOCK_SIZE {
                self.encode_pending(&mut out)?;
            }
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<Vec<u8>> {
        let mut out = self.push(&[])?;
        if !self.pending.is_empty() {
            self.encode_pending(&mut out)?;
        }
        Ok(out)
    }

    /// Encodes the pending samples (a whole block, or the last one) as the next frame.
    fn encode_pending(&mut self, out: &mut Vec<u8>) -> Result<()> {
        self.frame
            .fill_interleaved(&self.pending)
            .map_err(flac_error)?;
        self.context
            .fill_interleaved(&self.pending)
            .map_err(flac_error)?;
        let frame =
            flacenc::encode_fixed_size_frame(&self.config, &self.frame, self.frames, &self.info)
                .map_err(flac_error)?;
        let mut sink = flacenc::bitsink::ByteSink::new();
        frame.write(&mut sink).map_err(flac_error)?;
        let bytes = sink.as_slice();
        self.frame_bytes = Some(match self.frame_bytes {
            None => (bytes.len(), bytes.len()),
            Some((min, max)) => (min.min(bytes.len()), max.max(bytes.len())),
        });
        out.extend_from_slice(bytes);
        self.frames += 1;
        self.pending.clear();
        Ok(())
    }
}

/// MP3 by LAME: CBR [`MP3_BITRATE_KBPS`] kbit/s mono at the input rate.
struct Mp3Encoder {
    lame: mp3lame_encoder::Encoder,
    pcm: Vec<i16>,
}

fn mp3_error(what: &str, e: impl fmt::Debug) -> Error {
    Error::internal(format!("MP3 encoding failed ({what}): {e:?}"))
}

impl Mp3Encoder {
    /// `info_tag`: LAME writes a placeholder frame first, to be replaced by its Info tag at
    /// the end ([`Mp3Encoder::write_info_tag`]); only for a whole file in memory.
    fn new(sample_rate: u32, info_tag: bool) -> Result<Mp3Encoder> {
        use mp3lame_encoder::{Bitrate, Builder, Mode, Quality};
        let setup = |e| mp3_error("setup", e);
        let mut b = Builder::new().ok_or_else(|| Error::internal("LAME: out of memory"))?;
        b.set_num_channels(1).map_err(setup)?;
        b.set_sample_rate(sample_rate).map_err(setup)?;
        b.set_output_sample_rate(std::num::NonZeroU32::new(sample_rate))
            .map_err(setup)?;
        b.set_mode(Mode::Mono).map_err(setup)?;
        b.set_brate(Bitrate::Kbps64).map_err(setup)?;
        // LAME's recommended quality (-q 2).
        b.set_quality(Quality::NearBest).map_err(setup)?;
        b.set_to_write_vbr_tag(info_tag).map_err(setup)?;
        Ok(Mp3Encoder {
            lame: b.build().map_err(setup)?,
            pcm: Vec::new(),
        })
    }

    fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for chunk in samples.chunks(MP3_CHUNK) {
            self.pcm.clear();
            self.pcm.extend(chunk.iter().map(|&x| to_i16(x)));
            out.reserve(mp3lame_encoder::max_required_buffer_size(chunk.len()));
            self.lame
                .encode_to_vec(mp3lame_encoder::MonoPcm(&self.pcm), &mut out)
                .map_err(|e| mp3_error("encode", e))?;
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(mp3lame_encoder::max_required_buffer_size(0));
        self.lame
            .flush_to_vec::<mp3lame_encoder::FlushGap>(&mut out)
            .map_err(|e| mp3_error("flush", e))?;
        Ok(out)
    }

    /// Writes LAME's Info tag over the placeholder frame at the start of `file` (the whole
    /// output of an encoder made with `info_tag`).
    fn write_info_tag(&self, file: &mut [u8]) -> Result<()> {
        let mut tag = Vec::with_capacity(self.lame.lame_tag_size());
        let n = self
            .lame
            .lame_tag_encode_to_vec(&mut tag)
            .ok_or_else(|| Error::internal("LAME wrote no Info tag"))?
            .get();
        let len = file.len();
        let place = file.get_mut(..n).ok_or_else(|| {
            Error::internal(format!(
                "LAME's Info tag ({n} bytes) is longer than its output ({len} bytes)"
            ))
        })?;
        place.copy_from_slice(&tag[..n]);
        Ok(())
    }
}

/// An owned libopus encoder (mono). The only unsafe code of this module: every call goes
/// through these methods with a pointer that is valid from `new` until `drop`.
struct OpusEncoderHandle(NonNull<unsafe_libopus::OpusEncoder>);

// SAFETY: the encoder state is plain memory owned by this handle alone (no thread-local or
// global state in libopus's encoder); moving it to another thread is as sound as moving a
// `Box`. It is not `Sync`: every method takes `&mut self`.
unsafe impl Send for OpusEncoderHandle {}

fn opus_error(what: &str, code: i32) -> Error {
    Error::internal(format!(
        "Opus {what} failed: {}",
        unsafe_libopus::opus_strerror(code)
    ))
}

impl OpusEncoderHandle {
    fn new(sample_rate: u32) -> Result<OpusEncoderHandle> {
        let mut code = 0i32;
        // SAFETY: `opus_encoder_create` takes plain values and writes the status through a
        // valid pointer to a local; it returns null or an encoder we own from here on.
        let ptr = unsafe {
            unsafe_libopus::opus_encoder_create(
                sample_rate as i32,
                1,
                unsafe_libopus::OPUS_APPLICATION_AUDIO,
                &mut code,
            )
        };
        match NonNull::new(ptr) {
            Some(ptr) if code == unsafe_libopus::OPUS_OK => Ok(OpusEncoderHandle(ptr)),
            // Not reached: a non-null pointer comes with OPUS_OK; freed by drop otherwise.
            Some(ptr) => {
                drop(OpusEncoderHandle(ptr));
                Err(opus_error("encoder creation", code))
            }
            None => Err(opus_error("encoder creation", code)),
        }
    }

    /// A `set` request taking one `i32`.
    fn set(&mut self, request: i32, value: i32) -> Result<()> {
        use unsafe_libopus::varargs::{VarArg, VarArgs};
        // SAFETY: the pointer is a live encoder; every request passed here
        // (OPUS_SET_BITRATE_REQUEST) reads exactly one `I32` argument.
        let code = unsafe {
            unsafe_libopus::opus_encoder_ctl_impl(
                self.0.as_ptr(),
                request,
                VarArgs::new(vec![VarArg::I32(value)]),
            )
        };
        if code == unsafe_libopus::OPUS_OK {
            Ok(())
        } else {
            Err(opus_error("configuration", code))
        }
    }

    /// A `get` request writing one `i32`.
    fn get(&mut self, request: i32) -> Result<i32> {
        use unsafe_libopus::varargs::{VarArg, VarArgs};
        let mut value = 0i32;
        // SAFETY: the pointer is a live encoder; every request passed here
        // (OPUS_GET_LOOKAHEAD_REQUEST) writes exactly one `I32Out`, a local that outlives
        // the call.
        let code = unsafe {
            unsafe_libopus::opus_encoder_ctl_impl(
                self.0.as_ptr(),
                request,
                VarArgs::new(vec![VarArg::I32Out(&mut value)]),
            )
        };
        if code == unsafe_libopus::OPUS_OK {
            Ok(value)
        } else {
            Err(opus_error("query", code))
        }
    }

    /// Encodes one frame (`pcm.len()` a valid Opus frame size at the encoder's rate) into
    /// `packet`, returning the packet's length.
    fn encode(&mut self, pcm: &[i16], packet: &mut [u8]) -> Result<usize> {
        let frame = i32::try_from(pcm.len()).map_err(|_| Error::internal("Opus frame too long"))?;
        let room = i32::try_from(packet.len()).unwrap_or(i32::MAX);
        // SAFETY: the pointer is a live encoder; `pcm` holds `frame` mono samples and
        // `packet` `room` writable bytes, both borrowed for the whole call.
        let n = unsafe {
            unsafe_libopus::opus_encode(
                self.0.as_ptr(),
                pcm.as_ptr(),
                frame,
                packet.as_mut_ptr(),
                room,
            )
        };
        usize::try_from(n).map_err(|_| opus_error("encoding", n))
    }
}

impl Drop for OpusEncoderHandle {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `opus_encoder_create` and is freed once, here.
        unsafe { unsafe_libopus::opus_encoder_destroy(self.0.as_ptr()) }
    }
}

/// Ogg Opus (RFC 7845) written as it is encoded: 20 ms packets, granule positions in
/// 48 kHz samples counting the pre-skip.
struct OpusStream {
    encoder: OpusEncoderHandle,
    ogg: PacketWriter<'static, Vec<u8>>,
    sample_rate: u32,
    /// Samples per 20 ms frame at the input rate.
    frame: usize,
    /// 48 kHz samples per input sample.
    scale: u64,
    /// The encoder's delay in input samples (pre-skip = `lookahead * scale`).
    lookahead: usize,
    /// Samples that do not fill a frame yet.
    pending: Vec<i16>,
    /// Input samples received.
    received: u64,
    /// Packets written.
    packets: u64,
    /// Packets in the Ogg page being filled.
    in_page: usize,
    packet: Vec<u8>,
    headers_written: bool,
}

impl OpusStream {
    fn new(sample_rate: u32) -> Result<OpusStream> {
        let mut encoder = OpusEncoderHandle::new(sample_rate)?;
        encoder.set(unsafe_libopus::OPUS_SET_BITRATE_REQUEST, OPUS_BITRATE)?;
        let lookahead = encoder.get(unsafe_libopus::OPUS_GET_LOOKAHEAD_REQUEST)?;
        let lookahead = usize::try_from(lookahead)
            .map_err(|_| Error::internal(format!("Opus reported a lookahead of {lookahead}")))?;
        Ok(OpusStream {
            encoder,
            ogg: PacketWriter::new(Vec::new()),
            sample_rate,
            frame: sample_rate as usize / 50,
            scale: u64::from(48_000 / sample_rate),
            lookahead,
            pending: Vec::new(),
            received: 0,
            packets: 0,
            in_page: 0,
            packet: vec![0; OPUS_MAX_PACKET],
            headers_written: false,
        })
    }

    /// Pre-skip in 48 kHz samples.
    fn pre_skip(&self) -> Result<u16> {
        u16::try_from(self.lookahead as u64 * self.scale)
            .map_err(|_| Error::internal("Opus lookahead exceeds the OpusHead pre-skip field"))
    }

    fn write(&mut self, packet: Vec<u8>, end: PacketWriteEndInfo, granule: u64) -> Result<()> {
        self.ogg
            .write_packet(Cow::Owned(packet), OGG_SERIAL, end, granule)
            .map_err(|e| Error::internal(format!("Ogg page writing failed: {e}")))
    }

    /// The identification and comment headers, each on its own page (RFC 7845 section 5).
    fn write_headers(&mut self) -> Result<()> {
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(1); // channels
        head.extend_from_slice(&self.pre_skip()?.to_le_bytes());
        head.extend_from_slice(&self.sample_rate.to_le_bytes()); // input sample rate
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // channel mapping family 0: mono/stereo
        self.write(head, PacketWriteEndInfo::EndPage, 0)?;

        let vendor = unsafe_libopus::opus_get_version_string().as_bytes();
        let mut tags = Vec::with_capacity(16 + vendor.len());
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes()); // no user comments
        self.write(tags, PacketWriteEndInfo::EndPage, 0)?;
        self.headers_written = true;
        Ok(())
    }

    /// Encodes the first frame of `pending` (zero-padded when shorter) as the next packet
    /// and hands it to the page writer with `end`; `EndStream` gives it the granule position
    /// of the true end (pre-skip + input samples), which trims the padding.
    fn encode_frame(&mut self, end: PacketWriteEndInfo) -> Result<()> {
        if self.pending.len() < self.frame {
            self.pending.resize(self.frame, 0);
        }
        let n = self
            .encoder
            .encode(&self.pending[..self.frame], &mut self.packet)?;
        self.pending.drain(..self.frame);
        self.packets += 1;
        let granule = if end == PacketWriteEndInfo::EndStream {
            u64::from(self.pre_skip()?) + self.received * self.scale
        } else {
            self.packets * self.frame as u64 * self.scale
        };
        let packet = self.packet[..n].to_vec();
        self.in_page += 1;
        let end =
            if end == PacketWriteEndInfo::NormalPacket && self.in_page >= OPUS_PACKETS_PER_PAGE {
                PacketWriteEndInfo::EndPage
            } else {
                end
            };
        if end != PacketWriteEndInfo::NormalPacket {
            self.in_page = 0;
        }
        self.write(packet, end, granule)
    }

    fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(self.ogg.inner_mut())
    }

    fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>> {
        if !self.headers_written {
            self.write_headers()?;
        }
        self.pending.extend(samples.iter().map(|&x| to_i16(x)));
        self.received += samples.len() as u64;
        let frames = self.pending.len() / self.frame;
        for i in 0..frames {
            let end = if i + 1 == frames {
                // Everything encoded now goes out now.
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            self.encode_frame(end)?;
        }
        Ok(self.take_output())
    }

    fn finish(&mut self) -> Result<Vec<u8>> {
        if !self.headers_written {
            self.write_headers()?;
        }
        // Enough packets to hold every input sample after the encoder's delay, at least one.
        let needed = (self.received + self.lookahead as u64)
            .div_ceil(self.frame as u64)
            .max(1);
        while self.packets < needed {
            let end = if self.packets + 1 == needed {
                PacketWriteEndInfo::EndStream
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            self.encode_frame(end)?;
        }
        Ok(self.take_output())
    }
}
