/*
 * End-to-end test of the C API (include/chatterbox_ort.h) against a bundle.
 * Built and run by tests/capi.rs (also under valgrind):
 *
 *   capi_test BUNDLE_DIR SCRATCH_DIR [quick]
 *
 * "quick" runs the subset used under valgrind: every error path, two-token
 * syntheses, streaming with cancel (whole-text and token-level), voice
 * files; not the conditioning graphs (voices from audio), the determinism,
 * residency-switch and two-thread comparisons. Exit status 0 when every check
 * passed.
 */

#include "chatterbox_ort.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CBX_TEST_PI 3.14159265358979323846

static int g_checks = 0;
static int g_failures = 0;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        g_checks++;                                                            \
        if (!(cond)) {                                                         \
            g_failures++;                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
        }                                                                      \
    } while (0)

/* Checks a status; for a failure also that the message is non-empty and, when
 * `needle` is non-NULL, that it mentions `needle`. */
#define EXPECT_STATUS(got, want, needle) expect_status((got), (want), (needle), #got, __LINE__)

static void expect_status(CbxStatus got, CbxStatus want, const char *needle, const char *what,
                          int line) {
    g_checks++;
    const char *message = cbx_last_error_message();
    int ok = got == want;
    if (ok && want != CBX_OK) {
        ok = message != NULL && message[0] != '\0' && (needle == NULL || strstr(message, needle));
    }
    if (!ok) {
        g_failures++;
        fprintf(stderr, "FAIL line %d: %s returned %s, expected %s (message: \"%s\"%s%s)\n", line,
                what, cbx_status_name(got), cbx_status_name(want), message ? message : "(null)",
                needle ? ", should mention " : "", needle ? needle : "");
    }
}

static const char *g_bundle;
static char g_scratch[4096];
static int g_quick;

static const char *scratch_path(const char *name, char *buffer, size_t size) {
    snprintf(buffer, size, "%s/%s", g_scratch, name);
    return buffer;
}

/* ---- helpers --------------------------------------------------------------- */

typedef struct Samples {
    float *data;
    size_t count;
    uint32_t sample_rate;
} Samples;

static void samples_free(Samples *s) {
    free(s->data);
    s->data = NULL;
    s->count = 0;
}

/* Copies the samples out of `audio` and frees it. */
static Samples take_audio(CbxAudio *audio) {
    Samples s = {NULL, 0, 0};
    const float *data = NULL;
    if (cbx_audio_samples(audio, &data, &s.count, &s.sample_rate) == CBX_OK && s.count > 0) {
        s.data = malloc(s.count * sizeof(float));
        if (s.data) {
            memcpy(s.data, data, s.count * sizeof(float));
        }
    }
    cbx_audio_free(audio);
    return s;
}

static int same_samples(const Samples *a, const Samples *b) {
    return a->count == b->count && a->sample_rate == b->sample_rate && a->count > 0 &&
           memcmp(a->data, b->data, a->count * sizeof(float)) == 0;
}

/* `tokens` speech tokens (min_new_tokens == max_new_tokens) of one text chunk:
 * exactly 960 samples (two 480-sample mel frames) per token at 24 kHz. */
static size_t count_non_finite(const Samples *s) {
    size_t bad = 0;
    for (size_t i = 0; i < s->count; i++) {
        bad += !isfinite(s->data[i]);
    }
    return bad;
}

/* `tokens` speech tokens (min_new_tokens == max_new_tokens) of one text chunk:
 * exactly 960 samples (two 480-sample mel frames) per token at 24 kHz, finite
 * and in [-1, 1]. */
static void check_speech(const Samples *s, uint32_t tokens, const char *what) {
    CHECK(s->sample_rate == 24000, "%s: sample rate %u", what, s->sample_rate);
    CHECK(s->count == (size_t)960 * tokens, "%s: %zu samples, expected 960 x %u tokens", what,
          s->count, tokens);
    size_t outside = 0;
    for (size_t i = 0; i < s->count; i++) {
        outside += s->data[i] < -1.0f || s->data[i] > 1.0f;
    }
    CHECK(count_non_finite(s) == 0 && outside == 0,
          "%s: %zu samples not finite, %zu outside [-1, 1]", what, count_non_finite(s), outside);
}

/* A little-endian 16-bit mono WAV: a voiced buzz (harmonics of a gliding
 * pitch) with syllable-like loudness, so trimming keeps most of it. */
static int write_test_wav(const char *path, uint32_t sample_rate, double seconds) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        return 0;
    }
    uint32_t n = (uint32_t)(sample_rate * seconds);
    uint32_t data_bytes = n * 2;
    uint8_t header[44];
    memcpy(header, "RIFF", 4);
    uint32_t riff = 36 + data_bytes;
    memcpy(header + 4, &riff, 4);
    memcpy(header + 8, "WAVEfmt ", 8);
    uint32_t fmt_size = 16;
    uint16_t format = 1, channels = 1, block = 2, bits = 16;
    uint32_t byte_rate = sample_rate * 2;
    memcpy(header + 16, &fmt_size, 4);
    memcpy(header + 20, &format, 2);
    memcpy(header + 22, &channels, 2);
    memcpy(header + 24, &sample_rate, 4);
    memcpy(header + 28, &byte_rate, 4);
    memcpy(header + 32, &block, 2);
    memcpy(header + 34, &bits, 2);
    memcpy(header + 36, "data", 4);
    memcpy(header + 40, &data_bytes, 4);
    int ok = fwrite(header, 1, sizeof header, f) == sizeof header;
    double phase = 0.0;
    uint32_t noise = 12345u;
    for (uint32_t i = 0; ok && i < n; i++) {
        double t = (double)i / sample_rate;
        double f0 = 110.0 + 30.0 * sin(2.0 * CBX_TEST_PI * 0.7 * t);
        phase += 2.0 * CBX_TEST_PI * f0 / sample_rate;
        double v = 0.0;
        for (int h = 1; h <= 8; h++) {
            v += sin(h * phase) / h;
        }
        noise = noise * 1664525u + 1013904223u;
        v += ((double)(noise >> 8) / 16777216.0 - 0.5) * 0.05;
        double envelope = 0.2 + 0.8 * fabs(sin(2.0 * CBX_TEST_PI * 2.5 * t));
        int16_t s = (int16_t)(v * envelope * 0.3 * 32767.0);
        ok = fwrite(&s, 2, 1, f) == 1;
    }
    return fclose(f) == 0 && ok;
}

static int write_bytes(const char *path, const char *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        return 0;
    }
    int ok = fwrite(bytes, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static CbxRequest fast_request(const CbxEngine *engine, uint64_t seed, uint32_t tokens) {
    CbxRequest request;
    memset(&request, 0, sizeof request);
    EXPECT_STATUS(cbx_request_default(engine, &request), CBX_OK, NULL);
    request.seed = seed;
    request.max_new_tokens = tokens;
    request.min_new_tokens = tokens;
    request.flow_steps = 2;
    request.watermark = 0;
    return request;
}

static Samples synth(const CbxEngine *engine, const char *text, const CbxVoice *voice,
                     const CbxRequest *request) {
    CbxAudio *audio = NULL;
    EXPECT_STATUS(cbx_synthesize(engine, text, voice, request, &audio), CBX_OK, NULL);
    CHECK(audio != NULL, "no audio");
    return take_audio(audio);
}

/* ---- tests without an engine ------------------------------------------------ */

/* Copies the calling thread's last error message (the pointer itself is only
 * valid while that thread lives). */
static void *read_last_error(void *out) {
    snprintf((char *)out, 256, "%s", cbx_last_error_message());
    return NULL;
}

static void test_versions_and_names(void) {
    CHECK(cbx_abi_version() == CBX_ABI_VERSION, "abi %u", cbx_abi_version());
    CHECK(cbx_version() != NULL && strlen(cbx_version()) > 0, "empty version");
    CHECK(strcmp(cbx_status_name(CBX_OK), "CBX_OK") == 0, "%s", cbx_status_name(CBX_OK));
    CHECK(strcmp(cbx_status_name(CBX_CANCELLED), "CBX_CANCELLED") == 0, "%s",
          cbx_status_name(CBX_CANCELLED));
    CHECK(strcmp(cbx_status_name(CBX_INTERNAL), "CBX_INTERNAL") == 0, "%s",
          cbx_status_name(CBX_INTERNAL));
    CHECK(strcmp(cbx_status_name(12345), "CBX_UNKNOWN") == 0, "%s", cbx_status_name(12345));
    CHECK(strcmp(cbx_status_name(-1), "CBX_UNKNOWN") == 0, "%s", cbx_status_name(-1));
    /* ONNX Runtime is loaded by the first engine. */
    CHECK(cbx_onnxruntime_version() == NULL && strstr(cbx_last_error_message(), "not loaded"),
          "onnxruntime version before any engine: \"%s\"", cbx_last_error_message());
}

static void test_free_null(void) {
    cbx_engine_free(NULL);
    cbx_voice_free(NULL);
    cbx_audio_free(NULL);
    cbx_string_free(NULL);
    CHECK(1, "free(NULL) returned");
}

static void test_errors_without_engine(void) {
    char path[4200];
    CbxEngineOptions options;
    EXPECT_STATUS(cbx_engine_options_default(NULL), CBX_INVALID_ARGUMENT, "options");
    EXPECT_STATUS(cbx_engine_options_default(&options), CBX_OK, NULL);
    CHECK(options.struct_size == sizeof(CbxEngineOptions), "struct_size %u", options.struct_size);
    CHECK(options.provider == CBX_PROVIDER_CPU, "provider %u", options.provider);

    CbxEngine *engine = (CbxEngine *)(uintptr_t)1; /* must be reset to NULL */
    EXPECT_STATUS(cbx_engine_create(NULL, &engine), CBX_INVALID_ARGUMENT, "options");
    CHECK(engine == NULL, "out not reset to NULL on failure");
    EXPECT_STATUS(cbx_engine_create(&options, NULL), CBX_INVALID_ARGUMENT, "out");
    EXPECT_STATUS(cbx_engine_create(&options, &engine), CBX_INVALID_ARGUMENT, "bundle_dir");

    options.bundle_dir = scratch_path("no-such-bundle", path, sizeof path);
    EXPECT_STATUS(cbx_engine_create(&options, &engine), CBX_BUNDLE, "no-such-bundle");
    CHECK(engine == NULL, "engine after a failure");

    options.bundle_dir = g_bundle;
    options.struct_size = 0;
    EXPECT_STATUS(cbx_engine_create(&options, &engine), CBX_INVALID_ARGUMENT, "struct_size");
    options.struct_size = 8;
    EXPECT_STATUS(cbx_engine_create(&options, &engine), CBX_INVALID_ARGUMENT, "struct_size");
    options.struct_size = sizeof options;
    options.provider = 99;
    EXPECT_STATUS(cbx_engine_create(&options, &engine), CBX_INVALID_ARGUMENT, "provider");
    options.provider = CBX_PROVIDER_CPU;
    options.residency = "sometimes";
    EXPECT_STATUS(cbx_engine_create(&options, &engine), CBX_INVALID_ARGUMENT, "sometimes");
    options.residency = "\xff\xfe";
    EXPECT_STATUS(cbx_engine_create(&options, &engine), CBX_INVALID_ARGUMENT, "UTF-8");
    CHECK(engine == NULL, "engine after a failure");

    /* Messages are per thread: a fresh thread has none. */
    char other[256] = "(not run)";
    pthread_t thread;
    if (pthread_create(&thread, NULL, read_last_error, other) == 0) {
        pthread_join(thread, NULL);
    }
    CHECK(other[0] == '\0', "a new thread sees \"%s\"", other);

    CbxVoice *voice = (CbxVoice *)(uintptr_t)1;
    EXPECT_STATUS(cbx_voice_load(NULL, &voice), CBX_INVALID_ARGUMENT, "path");
    CHECK(voice == NULL, "out not reset to NULL on failure");
    EXPECT_STATUS(cbx_voice_load(scratch_path("missing.safetensors", path, sizeof path), &voice),
                  CBX_IO, "missing.safetensors");
    const char junk[] = "this is not a safetensors file";
    CHECK(write_bytes(scratch_path("junk.safetensors", path, sizeof path), junk, sizeof junk),
          "write %s", path);
    EXPECT_STATUS(cbx_voice_load(path, &voice), CBX_BUNDLE, "junk.safetensors");
    EXPECT_STATUS(cbx_voice_load(path, NULL), CBX_INVALID_ARGUMENT, "out");
    EXPECT_STATUS(cbx_voice_save(NULL, path), CBX_INVALID_ARGUMENT, "voice");

    CbxRequest request;
    EXPECT_STATUS(cbx_request_default(NULL, &request), CBX_INVALID_ARGUMENT, "engine");
    CbxAudio *audio = (CbxAudio *)(uintptr_t)1;
    EXPECT_STATUS(cbx_synthesize(NULL, "Hello.", NULL, NULL, &audio), CBX_INVALID_ARGUMENT,
                  "engine");
    CHECK(audio == NULL, "out not reset to NULL on failure");
    EXPECT_STATUS(cbx_synthesize_streaming(NULL, "Hello.", NULL, NULL, NULL, NULL),
                  CBX_INVALID_ARGUMENT, "callback");
    EXPECT_STATUS(cbx_voice_from_wav_file(NULL, "x.wav", &voice), CBX_INVALID_ARGUMENT, "engine");
    EXPECT_STATUS(cbx_engine_set_residency(NULL, "swap"), CBX_INVALID_ARGUMENT, "engine");
    char *json = (char *)(uintptr_t)1;
    EXPECT_STATUS(cbx_engine_stats_json(NULL, &json), CBX_INVALID_ARGUMENT, "engine");
    CHECK(json == NULL, "out not reset to NULL on failure");
    const float *data = (const float *)(uintptr_t)1;
    size_t count = 7;
    uint32_t rate = 7;
    EXPECT_STATUS(cbx_audio_samples(NULL, &data, &count, &rate), CBX_INVALID_ARGUMENT, "audio");
    CHECK(data == NULL && count == 0 && rate == 0, "outs not reset on failure");
}

/* ---- tests with an engine ------------------------------------------------------ */

static CbxEngine *create_engine(void) {
    CbxEngineOptions options;
    cbx_engine_options_default(&options);
    options.bundle_dir = g_bundle;
    options.threads = 1;
    CbxEngine *engine = NULL;
    EXPECT_STATUS(cbx_engine_create(&options, &engine), CBX_OK, NULL);
    return engine;
}

static void test_request_default(const CbxEngine *engine) {
    CbxRequest request;
    memset(&request, 0xAB, sizeof request);
    EXPECT_STATUS(cbx_request_default(engine, &request), CBX_OK, NULL);
    CHECK(request.struct_size == sizeof(CbxRequest), "struct_size %u", request.struct_size);
    CHECK(request.temperature > 0.0f && request.top_p > 0.0f && request.top_p <= 1.0f,
          "temperature %f top_p %f", request.temperature, request.top_p);
    CHECK(request.max_new_tokens > 0 && request.flow_steps > 0, "tokens %u steps %u",
          request.max_new_tokens, request.flow_steps);
    CHECK(request.seed == 0 && request.watermark == 1, "seed %llu watermark %d",
          (unsigned long long)request.seed, request.watermark);
    EXPECT_STATUS(cbx_request_default(engine, NULL), CBX_INVALID_ARGUMENT, "request");
}

static void test_synthesis(const CbxEngine *engine) {
    uint32_t tokens = g_quick ? 2 : 10;
    CbxRequest request = fast_request(engine, 42, tokens);
    Samples first = synth(engine, "Hello from C.", NULL, &request);
    check_speech(&first, tokens, "synthesis");
    if (!g_quick) {
        Samples again = synth(engine, "Hello from C.", NULL, &request);
        CHECK(same_samples(&first, &again), "same seed, different audio");
        samples_free(&again);
        request.seed = 43;
        Samples other = synth(engine, "Hello from C.", NULL, &request);
        CHECK(!same_samples(&first, &other), "another seed, same audio");
        samples_free(&other);
        /* The watermark keeps the length and the engine's output range. */
        request.seed = 42;
        request.watermark = 1;
        Samples marked = synth(engine, "Hello from C.", NULL, &request);
        CHECK(marked.sample_rate == 24000 && marked.count == first.count,
              "watermark: %zu samples at %u Hz, %zu without", marked.count, marked.sample_rate,
              first.count);
        check_speech(&marked, (uint32_t)(first.count / 960), "watermark");
        samples_free(&marked);
    }
    samples_free(&first);

    /* A caller built against a newer header passes a larger struct. */
    struct {
        CbxRequest request;
        uint64_t newer_field;
    } larger;
    larger.request = fast_request(engine, 42, 2);
    larger.request.struct_size = sizeof larger;
    larger.newer_field = 0;
    Samples from_larger = synth(engine, "Hello.", NULL, &larger.request);
    check_speech(&from_larger, 2, "larger struct_size");
    samples_free(&from_larger);
}

static void test_synthesis_errors(const CbxEngine *engine) {
    CbxRequest request = fast_request(engine, 1, 2);
    CbxAudio *audio = (CbxAudio *)(uintptr_t)1;
    EXPECT_STATUS(cbx_synthesize(engine, NULL, NULL, &request, &audio), CBX_INVALID_ARGUMENT,
                  "text");
    CHECK(audio == NULL, "out not reset to NULL on failure");
    EXPECT_STATUS(cbx_synthesize(engine, "Hello.", NULL, &request, NULL), CBX_INVALID_ARGUMENT,
                  "out");
    EXPECT_STATUS(cbx_synthesize(engine, "caf\xc3\x28 au lait", NULL, &request, &audio),
                  CBX_INVALID_TEXT, "UTF-8");
    EXPECT_STATUS(cbx_synthesize(engine, "", NULL, &request, &audio), CBX_INVALID_TEXT, NULL);
    EXPECT_STATUS(cbx_synthesize(engine, "   ", NULL, &request, &audio), CBX_INVALID_TEXT, NULL);

    CbxRequest bad = request;
    bad.temperature = -1.0f;
    EXPECT_STATUS(cbx_synthesize(engine, "Hello.", NULL, &bad, &audio), CBX_INVALID_ARGUMENT,
                  "temperature");
    bad = request;
    bad.top_p = 1.5f;
    EXPECT_STATUS(cbx_synthesize(engine, "Hello.", NULL, &bad, &audio), CBX_INVALID_ARGUMENT,
                  "top_p");
    bad = request;
    bad.flow_steps = 0;
    EXPECT_STATUS(cbx_synthesize(engine, "Hello.", NULL, &bad, &audio), CBX_INVALID_ARGUMENT,
                  "flow_steps");
    bad = request;
    bad.exaggeration = NAN;
    EXPECT_STATUS(cbx_synthesize(engine, "Hello.", NULL, &bad, &audio), CBX_INVALID_ARGUMENT,
                  "exaggeration");
    bad = request;
    bad.struct_size = 0;
    EXPECT_STATUS(cbx_synthesize(engine, "Hello.", NULL, &bad, &audio), CBX_INVALID_ARGUMENT,
                  "struct_size");
    /* A language on a bundle without languages; a field with no NUL; not a language id. */
    bad = request;
    strcpy(bad.language, "fr");
    EXPECT_STATUS(cbx_synthesize(engine, "Hello.", NULL, &bad, &audio), CBX_INVALID_ARGUMENT,
                  "no languages");
    bad = request;
    memset(bad.language, 'a', sizeof bad.language);
    EXPECT_STATUS(cbx_synthesize(engine, "Hello.", NULL, &bad, &audio), CBX_INVALID_ARGUMENT,
                  "NUL-terminated");
    bad = request;
    strcpy(bad.language, "f1");
    EXPECT_STATUS(cbx_synthesize(engine, "Hello.", NULL, &bad, &audio), CBX_INVALID_ARGUMENT,
                  "language");
    char *languages = (char *)(uintptr_t)1;
    EXPECT_STATUS(cbx_engine_languages(engine, &languages), CBX_OK, NULL);
    CHECK(languages != NULL && languages[0] == '\0', "languages of an English bundle: '%s'",
          languages ? languages : "(null)");
    cbx_string_free(languages);
    EXPECT_STATUS(cbx_engine_languages(engine, NULL), CBX_INVALID_ARGUMENT, "out_list");
    CHECK(audio == NULL, "audio after failures");

    const float *data = NULL;
    size_t count = 0;
    uint32_t rate = 0;
    CbxAudio *real = NULL;
    EXPECT_STATUS(cbx_synthesize(engine, "Hi.", NULL, &request, &real), CBX_OK, NULL);
    EXPECT_STATUS(cbx_audio_samples(real, NULL, &count, &rate), CBX_INVALID_ARGUMENT, "samples");
    EXPECT_STATUS(cbx_audio_samples(real, &data, NULL, &rate), CBX_INVALID_ARGUMENT, "count");
    EXPECT_STATUS(cbx_audio_samples(real, &data, &count, NULL), CBX_INVALID_ARGUMENT,
                  "sample_rate");
    cbx_audio_free(real);
}

typedef struct Stream {
    int calls;
    int cancel_after;
    float *data;
    size_t count;
    uint32_t sample_rate;
    int bad_rate;
} Stream;

static int32_t on_chunk(const float *samples, size_t count, uint32_t sample_rate, void *user) {
    Stream *s = (Stream *)user;
    s->calls++;
    if (s->sample_rate != 0 && s->sample_rate != sample_rate) {
        s->bad_rate = 1;
    }
    s->sample_rate = sample_rate;
    float *grown = realloc(s->data, (s->count + count) * sizeof(float));
    if (grown) {
        memcpy(grown + s->count, samples, count * sizeof(float));
        s->data = grown;
        s->count += count;
    }
    return s->cancel_after > 0 && s->calls >= s->cancel_after;
}

static void test_streaming(const CbxEngine *engine) {
    const char *text = "First sentence here. And a second one.";
    CbxRequest request = fast_request(engine, 5, g_quick ? 2 : 4);

    Stream cancel = {0, 1, NULL, 0, 0, 0};
    EXPECT_STATUS(cbx_synthesize_streaming(engine, text, NULL, &request, on_chunk, &cancel),
                  CBX_CANCELLED, "cancel");
    CHECK(cancel.calls == 1, "%d callback calls after cancelling on the first", cancel.calls);
    free(cancel.data);

    EXPECT_STATUS(cbx_synthesize_streaming(engine, text, NULL, &request, NULL, NULL),
                  CBX_INVALID_ARGUMENT, "callback");
    Stream unused = {0, 0, NULL, 0, 0, 0};
    EXPECT_STATUS(cbx_synthesize_streaming(engine, "\xc0", NULL, &request, on_chunk, &unused),
                  CBX_INVALID_TEXT, "UTF-8");
    CHECK(unused.calls == 0, "callback called for invalid text");

    if (!g_quick) {
        Stream full = {0, 0, NULL, 0, 0, 0};
        EXPECT_STATUS(cbx_synthesize_streaming(engine, text, NULL, &request, on_chunk, &full),
                      CBX_OK, NULL);
        CHECK(full.calls >= 1 && !full.bad_rate && full.sample_rate == 24000,
              "%d calls, rate %u", full.calls, full.sample_rate);
        Samples whole = synth(engine, text, NULL, &request);
        Samples streamed = {full.data, full.count, full.sample_rate};
        CHECK(same_samples(&whole, &streamed),
              "streamed chunks (%zu samples) differ from the whole audio (%zu samples)",
              streamed.count, whole.count);
        samples_free(&whole);
        free(full.data);
    }
}

/* ---- token-level streaming ---------------------------------------------------- */

typedef struct TokenStream {
    int calls;
    int cancel_on; /* 1-based call that returns non-zero; 0: never */
    float *data;
    size_t count;
    int bad_offset; /* a chunk whose offset is not the sum of the earlier counts */
    int bad_index;
    int bad_size;
    int bad_rate;
    int empty_before_last;
    int last_seen; /* chunks with `last` set */
    int after_last; /* chunks after one with `last` set */
    uint32_t last_tokens;
} TokenStream;

static int32_t on_token_chunk(const CbxStreamChunk *chunk, void *user) {
    TokenStream *s = (TokenStream *)user;
    s->calls++;
    s->after_last += s->last_seen > 0;
    s->bad_size |= chunk->struct_size != sizeof(CbxStreamChunk) || chunk->samples == NULL;
    s->bad_offset |= chunk->offset != (uint64_t)s->count;
    s->bad_index |= chunk->index != (uint32_t)(s->calls - 1) || chunk->text_chunk != 0;
    s->bad_rate |= chunk->sample_rate != 24000;
    s->empty_before_last |= chunk->count == 0 && !chunk->last;
    s->last_seen += chunk->last != 0;
    s->last_tokens = chunk->tokens;
    if (chunk->count > 0) {
        float *grown = realloc(s->data, (s->count + chunk->count) * sizeof(float));
        if (grown) {
            memcpy(grown + s->count, chunk->samples, chunk->count * sizeof(float));
            s->data = grown;
        }
        s->count += chunk->count;
    }
    return s->cancel_on > 0 && s->calls >= s->cancel_on;
}

static void check_token_stream(const TokenStream *s, uint32_t tokens, const char *what) {
    CHECK(s->calls > 1, "%s: %d chunk(s) for one sentence", what, s->calls);
    CHECK(!s->bad_offset && !s->bad_index && !s->bad_size && !s->bad_rate,
          "%s: offset %d, index %d, struct_size/samples %d, rate %d wrong", what, s->bad_offset,
          s->bad_index, s->bad_size, s->bad_rate);
    CHECK(!s->empty_before_last, "%s: an empty chunk before the last", what);
    CHECK(s->last_seen == 1 && s->after_last == 0 && s->last_tokens == tokens,
          "%s: %d chunks marked last, %d after it, %u tokens in the last", what, s->last_seen,
          s->after_last, s->last_tokens);
    Samples all = {s->data, s->count, 24000};
    check_speech(&all, tokens, what);
}

static CbxStreamOptions stream_options(uint32_t first, uint32_t chunk, int overlap) {
    CbxStreamOptions options;
    memset(&options, 0xAB, sizeof options);
    EXPECT_STATUS(cbx_stream_options_default(&options), CBX_OK, NULL);
    options.first_chunk_tokens = first;
    options.chunk_tokens = chunk;
    options.overlap = overlap;
    return options;
}

/* A whole token-level stream: its chunks, its stats, the same chunks again (also with
 * `overlap`), and with the default options. */
static void check_whole_token_streams(const CbxEngine *engine, const char *text,
                                      const CbxRequest *request, const CbxStreamOptions *options,
                                      uint32_t tokens) {
    TokenStream full = {0};
    CbxStreamStats stats;
    memset(&stats, 0xAB, sizeof stats);
    stats.struct_size = sizeof stats;
    EXPECT_STATUS(cbx_synthesize_stream(engine, text, NULL, request, options, on_token_chunk,
                                        &full, &stats),
                  CBX_OK, NULL);
    check_token_stream(&full, tokens, "token streaming");
    CHECK(stats.struct_size == sizeof stats && stats.chunks == (uint32_t)full.calls &&
              stats.s3gen_passes >= stats.chunks,
          "stats: size %u, %u chunks for %d calls, %u passes", stats.struct_size, stats.chunks,
          full.calls, stats.s3gen_passes);
    CHECK(stats.first_audio_s > 0.0 && stats.first_audio_s <= stats.total_s &&
              stats.max_chunk_latency_s > 0.0 &&
              stats.mean_chunk_latency_s <= stats.max_chunk_latency_s,
          "stats: first audio %g s, total %g s, latency max %g mean %g", stats.first_audio_s,
          stats.total_s, stats.max_chunk_latency_s, stats.mean_chunk_latency_s);
    CHECK(fabs(stats.audio_s - 0.04 * tokens) < 1e-9 && stats.rtf > 0.0,
          "stats: %g s of audio, rtf %g", stats.audio_s, stats.rtf);

    /* The same call, the same chunks: with NULL stats, and with T3 overlapped. */
    for (int overlap = 0; overlap <= 1; overlap++) {
        CbxStreamOptions again_options = *options;
        again_options.overlap = overlap;
        TokenStream again = {0};
        EXPECT_STATUS(cbx_synthesize_stream(engine, text, NULL, request, &again_options,
                                            on_token_chunk, &again, NULL),
                      CBX_OK, NULL);
        Samples a = {full.data, full.count, 24000};
        Samples b = {again.data, again.count, 24000};
        CHECK(again.calls == full.calls && same_samples(&a, &b),
              "overlap %d: %d chunks, %zu samples; first call %d chunks, %zu samples", overlap,
              again.calls, again.count, full.calls, full.count);
        free(again.data);
    }
    /* NULL options: the defaults. */
    TokenStream with_defaults = {0};
    EXPECT_STATUS(cbx_synthesize_stream(engine, text, NULL, request, NULL, on_token_chunk,
                                        &with_defaults, NULL),
                  CBX_OK, NULL);
    check_token_stream(&with_defaults, tokens, "token streaming with default options");
    free(with_defaults.data);
    free(full.data);
}

static void test_token_streaming(const CbxEngine *engine) {
    const char *text = "Streaming speech arrives while the model is still talking.";
    /* Full: passes at 12, 28 and 44 tokens and at the end; quick (under valgrind): only the
     * cancelled call, one pass at 10 tokens. */
    uint32_t tokens = g_quick ? 12 : 60;
    CbxRequest request = fast_request(engine, 5, tokens);
    if (g_quick) {
        request.flow_steps = 1; /* one Euler step: the pass is ~50 s under valgrind */
    }
    CbxStreamOptions options = stream_options(g_quick ? 10 : 12, g_quick ? 4096 : 16, 0);

    CbxStreamOptions defaults;
    memset(&defaults, 0, sizeof defaults);
    EXPECT_STATUS(cbx_stream_options_default(&defaults), CBX_OK, NULL);
    CHECK(defaults.struct_size == sizeof defaults && defaults.first_chunk_tokens == 20 &&
              defaults.chunk_tokens == 40 && defaults.overlap == 0,
          "stream option defaults: size %u, first %u, chunk %u, overlap %d",
          defaults.struct_size, defaults.first_chunk_tokens, defaults.chunk_tokens,
          defaults.overlap);
    EXPECT_STATUS(cbx_stream_options_default(NULL), CBX_INVALID_ARGUMENT, "options");

    /* The successful streams run in the full test only: under valgrind (quick) every
     * S3Gen pass takes most of a minute; ASan runs them. */
    if (!g_quick) {
        check_whole_token_streams(engine, text, &request, &options, tokens);
    }

    /* Cancelling on the first chunk: no further call, stats zeroed. */
    TokenStream cancel = {0};
    cancel.cancel_on = 1;
    CbxStreamStats stats;
    memset(&stats, 0xAB, sizeof stats);
    stats.struct_size = sizeof stats;
    EXPECT_STATUS(cbx_synthesize_stream(engine, text, NULL, &request, &options, on_token_chunk,
                                        &cancel, &stats),
                  CBX_CANCELLED, "cancel");
    CHECK(cancel.calls == 1, "%d callback calls after cancelling on the first", cancel.calls);
    CHECK(stats.chunks == 0 && stats.first_audio_s == 0.0 && stats.total_s == 0.0,
          "stats after cancelling: %u chunks, first audio %g s", stats.chunks,
          stats.first_audio_s);
    free(cancel.data);

    /* Refusals, each before any callback. */
    TokenStream unused = {0};
    EXPECT_STATUS(cbx_synthesize_stream(engine, text, NULL, &request, &options, NULL, NULL, NULL),
                  CBX_INVALID_ARGUMENT, "callback");
    EXPECT_STATUS(cbx_synthesize_stream(NULL, text, NULL, &request, &options, on_token_chunk,
                                        &unused, NULL),
                  CBX_INVALID_ARGUMENT, "engine");
    EXPECT_STATUS(cbx_synthesize_stream(engine, "\xc0", NULL, &request, &options, on_token_chunk,
                                        &unused, NULL),
                  CBX_INVALID_TEXT, "UTF-8");
    CbxStreamOptions bad = stream_options(3, 16, 0);
    EXPECT_STATUS(cbx_synthesize_stream(engine, text, NULL, &request, &bad, on_token_chunk,
                                        &unused, NULL),
                  CBX_INVALID_ARGUMENT, "first_chunk_tokens");
    bad = stream_options(12, 0, 0);
    EXPECT_STATUS(cbx_synthesize_stream(engine, text, NULL, &request, &bad, on_token_chunk,
                                        &unused, NULL),
                  CBX_INVALID_ARGUMENT, "chunk_tokens");
    bad = stream_options(12, 5000, 0);
    EXPECT_STATUS(cbx_synthesize_stream(engine, text, NULL, &request, &bad, on_token_chunk,
                                        &unused, NULL),
                  CBX_INVALID_ARGUMENT, "chunk_tokens");
    bad = options;
    bad.struct_size = 0;
    EXPECT_STATUS(cbx_synthesize_stream(engine, text, NULL, &request, &bad, on_token_chunk,
                                        &unused, NULL),
                  CBX_INVALID_ARGUMENT, "struct_size");
    bad.struct_size = 8;
    EXPECT_STATUS(cbx_synthesize_stream(engine, text, NULL, &request, &bad, on_token_chunk,
                                        &unused, NULL),
                  CBX_INVALID_ARGUMENT, "struct_size");
    stats.struct_size = 8;
    stats.chunks = 12345;
    EXPECT_STATUS(cbx_synthesize_stream(engine, text, NULL, &request, &options, on_token_chunk,
                                        &unused, &stats),
                  CBX_INVALID_ARGUMENT, "out_stats->struct_size");
    CHECK(stats.chunks == 12345, "a refused stats struct was written");
    CHECK(unused.calls == 0, "%d callback calls for refused calls", unused.calls);
    free(unused.data);

    if (g_quick) {
        return;
    }
    /* A caller built against a newer header: larger structs, trailing fields untouched. */
    struct {
        CbxStreamOptions options;
        uint64_t newer_field;
    } larger_options;
    larger_options.options = options;
    larger_options.options.struct_size = sizeof larger_options;
    larger_options.newer_field = 0;
    struct {
        CbxStreamStats stats;
        uint64_t newer_field;
    } larger_stats;
    memset(&larger_stats, 0, sizeof larger_stats);
    larger_stats.stats.struct_size = sizeof larger_stats;
    larger_stats.newer_field = 0xDEADBEEF;
    TokenStream larger = {0};
    CbxRequest short_request = fast_request(engine, 6, 16);
    EXPECT_STATUS(cbx_synthesize_stream(engine, "Larger structs.", NULL, &short_request,
                                        &larger_options.options, on_token_chunk, &larger,
                                        &larger_stats.stats),
                  CBX_OK, NULL);
    CHECK(larger.calls >= 1 && larger_stats.stats.chunks == (uint32_t)larger.calls &&
              larger_stats.newer_field == 0xDEADBEEF &&
              larger_stats.stats.struct_size == sizeof larger_stats,
          "larger structs: %d calls, %u chunks, trailing field %llx, struct_size %u",
          larger.calls, larger_stats.stats.chunks,
          (unsigned long long)larger_stats.newer_field, larger_stats.stats.struct_size);
    free(larger.data);
}

typedef struct {
    const CbxVoice *voice;
    const char *path;
    CbxStatus status[5];
} SaveJob;

static void *save_job(void *arg) {
    SaveJob *job = arg;
    for (int i = 0; i < 5; i++) {
        job->status[i] = cbx_voice_save(job->voice, job->path);
    }
    return NULL;
}

/* Eight threads saving one voice to one path at once all succeed (each save
 * uses its own temporary file), and the file is a whole voice afterwards.
 * A folder is refused; /dev/null is written, not replaced. */
static void test_saving(const CbxVoice *voice) {
    char path[4200];
    scratch_path("concurrent.safetensors", path, sizeof path);
    SaveJob jobs[8];
    pthread_t threads[8];
    int started[8];
    for (int i = 0; i < 8; i++) {
        jobs[i].voice = voice;
        jobs[i].path = path;
        started[i] = pthread_create(&threads[i], NULL, save_job, &jobs[i]) == 0;
        CHECK(started[i], "pthread_create %d", i);
    }
    for (int i = 0; i < 8; i++) {
        if (!started[i]) {
            continue;
        }
        pthread_join(threads[i], NULL);
        for (int k = 0; k < 5; k++) {
            CHECK(jobs[i].status[k] == CBX_OK, "concurrent save %d.%d: %s", i, k,
                  cbx_status_name(jobs[i].status[k]));
        }
    }
    CbxVoice *loaded = NULL;
    EXPECT_STATUS(cbx_voice_load(path, &loaded), CBX_OK, NULL);
    cbx_voice_free(loaded);
    EXPECT_STATUS(cbx_voice_save(voice, g_scratch), CBX_INVALID_ARGUMENT, "directory");
    EXPECT_STATUS(cbx_voice_save(voice, "/dev/null"), CBX_OK, NULL);
}

/* Quick mode: a voice file saved and loaded, no conditioning graphs. */
static void test_voice_files(void) {
    char bundled[4200], saved[4200];
    snprintf(bundled, sizeof bundled, "%s/voice.safetensors", g_bundle);
    CbxVoice *voice = NULL;
    EXPECT_STATUS(cbx_voice_load(bundled, &voice), CBX_OK, NULL);
    EXPECT_STATUS(cbx_voice_save(voice, scratch_path("copy.safetensors", saved, sizeof saved)),
                  CBX_OK, NULL);
    test_saving(voice);
    cbx_voice_free(voice);
    voice = NULL;
    EXPECT_STATUS(cbx_voice_load(saved, &voice), CBX_OK, NULL);
    cbx_voice_free(voice);
}

static void test_voices(const CbxEngine *engine) {
    char wav[4200], corrupt[4200], missing[4200], saved[4200];
    scratch_path("reference.wav", wav, sizeof wav);
    CHECK(write_test_wav(wav, 22050, 2.0), "writing %s", wav);
    CbxVoice *voice = NULL;
    if (g_quick) {
        test_voice_files();
        goto errors;
    }

    EXPECT_STATUS(cbx_voice_from_wav_file(engine, wav, &voice), CBX_OK, NULL);
    CHECK(voice != NULL, "no voice");
    CbxRequest request = fast_request(engine, 9, 3);
    Samples with_voice = synth(engine, "A cloned voice.", voice, &request);
    check_speech(&with_voice, 3, "synthesis with a WAV voice");

    scratch_path("voice.safetensors", saved, sizeof saved);
    EXPECT_STATUS(cbx_voice_save(voice, saved), CBX_OK, NULL);
    EXPECT_STATUS(cbx_voice_save(voice, NULL), CBX_INVALID_ARGUMENT, "path");
    test_saving(voice);
    CbxVoice *loaded = NULL;
    EXPECT_STATUS(cbx_voice_load(saved, &loaded), CBX_OK, NULL);
    Samples with_loaded = synth(engine, "A cloned voice.", loaded, &request);
    CHECK(same_samples(&with_voice, &with_loaded), "a saved and loaded voice sounds different");
    samples_free(&with_loaded);
    samples_free(&with_voice);
    cbx_voice_free(loaded);
    cbx_voice_free(voice);

    /* The same clip as samples. */
    size_t n = 22050 * 2;
    float *samples = malloc(n * sizeof(float));
    for (size_t i = 0; samples && i < n; i++) {
        double t = (double)i / 22050.0;
        samples[i] = (float)(0.3 * sin(2.0 * CBX_TEST_PI * 140.0 * t) * (0.2 + 0.8 * fabs(sin(5.0 * t))));
    }
    voice = NULL;
    EXPECT_STATUS(cbx_voice_from_samples(engine, samples, n, 22050, &voice), CBX_OK, NULL);
    cbx_voice_free(voice);
    EXPECT_STATUS(cbx_voice_from_samples(engine, samples, n, 0, &voice), CBX_INVALID_ARGUMENT,
                  "sample_rate");
    EXPECT_STATUS(cbx_voice_from_samples(engine, samples, 0, 22050, &voice), CBX_INVALID_AUDIO,
                  NULL);
    EXPECT_STATUS(cbx_voice_from_samples(engine, NULL, n, 22050, &voice), CBX_INVALID_ARGUMENT,
                  "samples");
    EXPECT_STATUS(cbx_voice_from_samples(NULL, samples, n, 22050, &voice), CBX_INVALID_ARGUMENT,
                  "engine");
    if (samples) {
        samples[100] = NAN;
    }
    EXPECT_STATUS(cbx_voice_from_samples(engine, samples, n, 22050, &voice), CBX_INVALID_AUDIO,
                  NULL);
    CHECK(voice == NULL, "voice after failures");
    free(samples);

errors:
    scratch_path("corrupt.wav", corrupt, sizeof corrupt);
    const char bytes[] = "RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00garbage garbage garbage";
    CHECK(write_bytes(corrupt, bytes, sizeof bytes - 1), "writing %s", corrupt);
    EXPECT_STATUS(cbx_voice_from_wav_file(engine, corrupt, &voice), CBX_INVALID_AUDIO,
                  "corrupt.wav");
    scratch_path("missing.wav", missing, sizeof missing);
    /* A WAV that cannot be opened: the audio module reports it as unusable
     * audio (cbx_voice_load reports a missing voice file as CBX_IO). */
    CbxStatus status = cbx_voice_from_wav_file(engine, missing, &voice);
    EXPECT_STATUS(status, status == CBX_IO ? CBX_IO : CBX_INVALID_AUDIO, "missing.wav");
    EXPECT_STATUS(cbx_voice_from_wav_file(engine, NULL, &voice), CBX_INVALID_ARGUMENT, "path");
    EXPECT_STATUS(cbx_voice_from_wav_file(engine, wav, NULL), CBX_INVALID_ARGUMENT, "out");
    CHECK(voice == NULL, "voice after failures");
}

/* ---- voice conversion -------------------------------------------------------- */

static CbxConvertRequest fast_convert_request(const CbxEngine *engine, uint64_t seed) {
    CbxConvertRequest request;
    memset(&request, 0, sizeof request);
    EXPECT_STATUS(cbx_convert_request_default(engine, &request), CBX_OK, NULL);
    CHECK(request.struct_size == sizeof request && request.flow_steps >= 1 && request.watermark,
          "convert request defaults: size %u, %u steps, watermark %d", request.struct_size,
          request.flow_steps, request.watermark);
    request.seed = seed;
    request.flow_steps = 1;
    request.watermark = 0;
    return request;
}

/* A converted source of `tokens` 40 ms tokens: 960 samples each at 24 kHz (less
 * 480 when the target's prompt mel has an odd last frame), finite, in [-1, 1]. */
static void check_converted(const Samples *s, uint32_t tokens, const char *what) {
    size_t want = (size_t)960 * tokens;
    CHECK(s->count == want || s->count + 480 == want, "%s: %zu samples for %u tokens", what,
          s->count, tokens);
    size_t outside = 0;
    for (size_t i = 0; i < s->count; i++) {
        outside += s->data[i] < -1.0f || s->data[i] > 1.0f;
    }
    CHECK(s->sample_rate == 24000 && count_non_finite(s) == 0 && outside == 0,
          "%s: rate %u, %zu not finite, %zu outside [-1, 1]", what, s->sample_rate,
          count_non_finite(s), outside);
}

static void test_conversion(const CbxEngine *engine) {
    /* 0.5 s at 16 kHz: 12.5 -> 13 tokens. */
    size_t n = 8000;
    float *source = malloc(n * sizeof(float));
    CHECK(source != NULL, "malloc");
    if (!source) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        double t = (double)i / 16000.0;
        source[i] = (float)(0.3 * sin(2.0 * CBX_TEST_PI * 150.0 * t) * (0.3 + 0.7 * fabs(sin(6.0 * t))));
    }
    CbxConvertRequest request = fast_convert_request(engine, 3);
    /* A target from the same 0.5 s: its short prompt (12 tokens) keeps the flow cheap under
     * valgrind; the bundle's voice (NULL target, a 10 s prompt) in the full run. */
    CbxVcTarget *small = NULL;
    EXPECT_STATUS(cbx_vc_target_from_samples(engine, source, n, 16000, &small), CBX_OK, NULL);
    CbxAudio *audio = NULL;
    EXPECT_STATUS(cbx_convert(engine, source, n, 16000, small, &request, &audio), CBX_OK, NULL);
    Samples converted = take_audio(audio);
    check_converted(&converted, 13, "conversion to a 0.5 s target");
    if (!g_quick) {
        EXPECT_STATUS(cbx_convert(engine, source, n, 16000, NULL, &request, &audio), CBX_OK,
                      NULL);
        Samples bundle_voice = take_audio(audio);
        check_converted(&bundle_voice, 13, "conversion to the bundle voice");
        samples_free(&bundle_voice);
    }

    /* Errors, each before any work; `*out` stays NULL. */
    audio = NULL;
    EXPECT_STATUS(cbx_convert(NULL, source, n, 16000, NULL, &request, &audio),
                  CBX_INVALID_ARGUMENT, "engine");
    EXPECT_STATUS(cbx_convert(engine, NULL, n, 16000, NULL, &request, &audio),
                  CBX_INVALID_ARGUMENT, "samples");
    EXPECT_STATUS(cbx_convert(engine, source, n, 0, NULL, &request, &audio), CBX_INVALID_ARGUMENT,
                  "sample_rate");
    EXPECT_STATUS(cbx_convert(engine, source, 0, 16000, NULL, &request, &audio),
                  CBX_INVALID_AUDIO, "empty");
    EXPECT_STATUS(cbx_convert(engine, source, 600, 16000, NULL, &request, &audio),
                  CBX_INVALID_AUDIO, "0.04 s");
    /* A count far past the hour is refused without touching the samples. */
    EXPECT_STATUS(cbx_convert(engine, source, (size_t)-1 / 8, 16000, NULL, &request, &audio),
                  CBX_INVALID_AUDIO, "3600 s");
    EXPECT_STATUS(cbx_convert(engine, source, n, 16000, NULL, &request, NULL),
                  CBX_INVALID_ARGUMENT, "out");
    CbxConvertRequest bad = request;
    bad.flow_steps = 0;
    EXPECT_STATUS(cbx_convert(engine, source, n, 16000, NULL, &bad, &audio), CBX_INVALID_ARGUMENT,
                  "flow_steps");
    bad = request;
    bad.struct_size = 0;
    EXPECT_STATUS(cbx_convert(engine, source, n, 16000, NULL, &bad, &audio), CBX_INVALID_ARGUMENT,
                  "struct_size");
    float *silent = calloc(n, sizeof(float));
    EXPECT_STATUS(cbx_convert(engine, silent, n, 16000, NULL, &request, &audio), CBX_INVALID_AUDIO,
                  "silent");
    free(silent);
    float saved = source[17];
    source[17] = NAN;
    EXPECT_STATUS(cbx_convert(engine, source, n, 16000, NULL, &request, &audio), CBX_INVALID_AUDIO,
                  "sample 17");
    source[17] = saved;
    CHECK(audio == NULL, "audio after failures");

    /* Streaming: the NULL callback, cancelling on the first chunk. */
    EXPECT_STATUS(cbx_convert_streaming(engine, source, n, 16000, NULL, &request, NULL, NULL),
                  CBX_INVALID_ARGUMENT, "callback");
    Stream cancel = {0, 1, NULL, 0, 0, 0};
    EXPECT_STATUS(
        cbx_convert_streaming(engine, source, 1600, 16000, small, &request, on_chunk, &cancel),
        CBX_CANCELLED, "cancel");
    CHECK(cancel.calls == 1, "%d callback calls after cancelling on the first", cancel.calls);
    free(cancel.data);

    CbxVcTarget *target = NULL;
    EXPECT_STATUS(cbx_vc_target_from_voice(NULL, &target), CBX_INVALID_ARGUMENT, "voice");
    EXPECT_STATUS(cbx_vc_target_from_wav_file(engine, NULL, &target), CBX_INVALID_ARGUMENT,
                  "path");
    EXPECT_STATUS(cbx_vc_target_from_samples(engine, source, 4000, 16000, &target),
                  CBX_INVALID_AUDIO, "0.5 s");
    EXPECT_STATUS(cbx_convert_wav_file(engine, NULL, NULL, &request, &audio), CBX_INVALID_ARGUMENT,
                  "source_path");
    CHECK(target == NULL && audio == NULL, "handles after failures");
    cbx_vc_target_free(NULL);

    if (!g_quick) {
        /* Whole vs streamed, same seed same audio. */
        Stream full = {0, 0, NULL, 0, 0, 0};
        EXPECT_STATUS(
            cbx_convert_streaming(engine, source, n, 16000, small, &request, on_chunk, &full),
            CBX_OK, NULL);
        Samples streamed = {full.data, full.count, full.sample_rate};
        CHECK(full.calls == 1 && same_samples(&converted, &streamed),
              "streamed conversion (%d calls, %zu samples) differs from the whole (%zu samples)",
              full.calls, full.count, converted.count);
        free(full.data);

        /* A target from a WAV file and from the voice of the same file convert alike. */
        char wav[4200];
        scratch_path("target.wav", wav, sizeof wav);
        CHECK(write_test_wav(wav, 22050, 2.0), "writing %s", wav);
        EXPECT_STATUS(cbx_vc_target_from_wav_file(engine, wav, &target), CBX_OK, NULL);
        CbxVoice *voice = NULL;
        EXPECT_STATUS(cbx_voice_from_wav_file(engine, wav, &voice), CBX_OK, NULL);
        CbxVcTarget *from_voice = NULL;
        EXPECT_STATUS(cbx_vc_target_from_voice(voice, &from_voice), CBX_OK, NULL);
        cbx_voice_free(voice);
        EXPECT_STATUS(cbx_convert(engine, source, n, 16000, target, &request, &audio), CBX_OK,
                      NULL);
        Samples a = take_audio(audio);
        EXPECT_STATUS(cbx_convert(engine, source, n, 16000, from_voice, &request, &audio), CBX_OK,
                      NULL);
        Samples b = take_audio(audio);
        check_converted(&a, 13, "conversion to a WAV target");
        CHECK(same_samples(&a, &b), "a target from a voice converts differently");
        /* The WAV as a source (2 s at 22.05 kHz: 50 tokens). */
        EXPECT_STATUS(cbx_convert_wav_file(engine, wav, target, &request, &audio), CBX_OK, NULL);
        Samples c = take_audio(audio);
        check_converted(&c, 50, "conversion of a WAV file");
        samples_free(&a);
        samples_free(&b);
        samples_free(&c);
        cbx_vc_target_free(from_voice);
        cbx_vc_target_free(target);
    }
    cbx_vc_target_free(small);
    samples_free(&converted);
    free(source);
}

static void test_residency_and_stats(const CbxEngine *engine) {
    if (!g_quick) {
        EXPECT_STATUS(cbx_engine_set_residency(engine, "swap"), CBX_OK, NULL);
        CbxRequest request = fast_request(engine, 3, 2);
        Samples s = synth(engine, "Swapped.", NULL, &request);
        check_speech(&s, 2, "synthesis under swap");
        samples_free(&s);
    }
    char *json = NULL;
    EXPECT_STATUS(cbx_engine_stats_json(engine, &json), CBX_OK, NULL);
    CHECK(json != NULL && json[0] == '{' && strlen(json) > 2, "stats \"%s\"", json ? json : "");
    cbx_string_free(json);
    EXPECT_STATUS(cbx_engine_stats_json(engine, NULL), CBX_INVALID_ARGUMENT, "out_json");
    EXPECT_STATUS(cbx_engine_set_residency(engine, "resident"), CBX_OK, NULL);
    EXPECT_STATUS(cbx_engine_set_residency(engine, "sometimes"), CBX_INVALID_ARGUMENT,
                  "sometimes");
    EXPECT_STATUS(cbx_engine_set_residency(engine, NULL), CBX_INVALID_ARGUMENT, "preset");
}

typedef struct Job {
    const CbxEngine *engine;
    CbxRequest request;
    Samples result;
    CbxStatus status;
} Job;

static void *run_job(void *arg) {
    Job *job = (Job *)arg;
    CbxAudio *audio = NULL;
    job->status = cbx_synthesize(job->engine, "Two threads, one engine.", NULL, &job->request,
                                 &audio);
    job->result = take_audio(audio);
    return NULL;
}

static void test_threads(const CbxEngine *engine) {
    CbxRequest request = fast_request(engine, 77, 6);
    Samples reference = synth(engine, "Two threads, one engine.", NULL, &request);
    Job jobs[2] = {{engine, request, {NULL, 0, 0}, CBX_INTERNAL},
                   {engine, request, {NULL, 0, 0}, CBX_INTERNAL}};
    pthread_t threads[2];
    int started[2];
    for (int i = 0; i < 2; i++) {
        started[i] = pthread_create(&threads[i], NULL, run_job, &jobs[i]) == 0;
        CHECK(started[i], "pthread_create %d", i);
    }
    for (int i = 0; i < 2; i++) {
        if (started[i]) {
            pthread_join(threads[i], NULL);
        }
        CHECK(jobs[i].status == CBX_OK, "thread %d: %s", i, cbx_status_name(jobs[i].status));
        CHECK(same_samples(&reference, &jobs[i].result),
              "thread %d: %zu samples differ from the single-thread %zu", i, jobs[i].result.count,
              reference.count);
        samples_free(&jobs[i].result);
    }
    samples_free(&reference);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s BUNDLE_DIR SCRATCH_DIR [quick]\n", argv[0]);
        return 2;
    }
    g_bundle = argv[1];
    snprintf(g_scratch, sizeof g_scratch, "%s", argv[2]);
    g_quick = argc > 3 && strcmp(argv[3], "quick") == 0;

    test_versions_and_names();
    test_free_null();
    test_errors_without_engine();

    CbxEngine *engine = create_engine();
    if (engine) {
        const char *ort = cbx_onnxruntime_version();
        CHECK(ort != NULL && ort[0] != '\0', "onnxruntime version: %s", cbx_last_error_message());
        test_request_default(engine);
        test_synthesis(engine);
        test_synthesis_errors(engine);
        test_streaming(engine);
        test_token_streaming(engine);
        test_voices(engine);
        test_conversion(engine);
        test_residency_and_stats(engine);
        if (!g_quick) {
            test_threads(engine);
        }
    }
    cbx_engine_free(engine);

    printf("capi_test (%s): %d checks, %d failures\n", g_quick ? "quick" : "full", g_checks,
           g_failures);
    return g_failures == 0 ? 0 : 1;
}
