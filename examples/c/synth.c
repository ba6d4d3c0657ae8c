/*
 * Text to a WAV file with the chatterbox-ort C API.
 *
 *   cc -I include examples/c/synth.c -L target/release -lchatterbox_ort \
 *      -Wl,-rpath,target/release -o synth
 *   ./synth onnx/tiny "Hello from C." hello.wav [--voice ref.wav]
 *          [--max-new-tokens N] [--min-new-tokens N]
 */

#include "chatterbox_ort.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints the failing call, its status and the library's message. */
static int fail(const char *what, CbxStatus status) {
    fprintf(stderr, "%s: %s: %s\n", what, cbx_status_name(status), cbx_last_error_message());
    return 1;
}

static void put_u16(FILE *f, unsigned v) {
    fputc(v & 0xff, f);
    fputc((v >> 8) & 0xff, f);
}

static void put_u32(FILE *f, unsigned long v) {
    put_u16(f, v & 0xffff);
    put_u16(f, (v >> 16) & 0xffff);
}

/* Writes mono float samples in [-1, 1] as a 16-bit PCM WAV. */
static int write_wav(const char *path, const float *samples, size_t count, uint32_t rate) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        return 0;
    }
    fwrite("RIFF", 1, 4, f);
    put_u32(f, 36 + count * 2);
    fwrite("WAVEfmt ", 1, 8, f);
    put_u32(f, 16);
    put_u16(f, 1);        /* PCM */
    put_u16(f, 1);        /* mono */
    put_u32(f, rate);
    put_u32(f, rate * 2); /* bytes per second */
    put_u16(f, 2);        /* bytes per frame */
    put_u16(f, 16);       /* bits per sample */
    fwrite("data", 1, 4, f);
    put_u32(f, count * 2);
    for (size_t i = 0; i < count; i++) {
        float s = samples[i] < -1.0f ? -1.0f : samples[i] > 1.0f ? 1.0f : samples[i];
        put_u16(f, (unsigned)(int16_t)(s * 32767.0f) & 0xffff);
    }
    return fclose(f) == 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s BUNDLE_DIR TEXT OUT.wav [--voice REF.wav] [--max-new-tokens N] "
                "[--min-new-tokens N]\n",
                argv[0]);
        return 2;
    }
    const char *voice_wav = NULL;
    long max_new_tokens = 0, min_new_tokens = 0;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--voice") == 0) {
            voice_wav = argv[i + 1];
        } else if (strcmp(argv[i], "--max-new-tokens") == 0) {
            max_new_tokens = strtol(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--min-new-tokens") == 0) {
            min_new_tokens = strtol(argv[i + 1], NULL, 10);
        }
    }
    if (cbx_abi_version() != CBX_ABI_VERSION) {
        fprintf(stderr, "libchatterbox_ort has ABI %u, this program was built for %u\n",
                cbx_abi_version(), CBX_ABI_VERSION);
        return 1;
    }

    /* 1. The engine: options start from the defaults. */
    CbxEngineOptions options;
    cbx_engine_options_default(&options);
    options.bundle_dir = argv[1];
    options.residency = "resident";
    CbxEngine *engine = NULL;
    CbxStatus status = cbx_engine_create(&options, &engine);
    if (status != CBX_OK) {
        return fail("cbx_engine_create", status);
    }
    printf("chatterbox-ort %s, ONNX Runtime %s\n", cbx_version(), cbx_onnxruntime_version());

    /* 2. A voice (NULL: the bundle's default voice). */
    CbxVoice *voice = NULL;
    if (voice_wav) {
        status = cbx_voice_from_wav_file(engine, voice_wav, &voice);
        if (status != CBX_OK) {
            cbx_engine_free(engine);
            return fail("cbx_voice_from_wav_file", status);
        }
    }

    /* 3. The request: the bundle's defaults, then our changes. */
    CbxRequest request;
    cbx_request_default(engine, &request);
    request.seed = 42;
    if (max_new_tokens > 0) {
        request.max_new_tokens = (uint32_t)max_new_tokens;
    }
    if (min_new_tokens > 0) {
        request.min_new_tokens = (uint32_t)min_new_tokens;
    }

    /* 4. Synthesis; the audio owns its samples until cbx_audio_free. */
    CbxAudio *audio = NULL;
    status = cbx_synthesize(engine, argv[2], voice, &request, &audio);
    int rc = 0;
    if (status != CBX_OK) {
        rc = fail("cbx_synthesize", status);
    } else {
        const float *samples = NULL;
        size_t count = 0;
        uint32_t rate = 0;
        cbx_audio_samples(audio, &samples, &count, &rate);
        if (write_wav(argv[3], samples, count, rate)) {
            printf("wrote %s: %.2f s at %u Hz\n", argv[3], (double)count / rate, rate);
        } else {
            fprintf(stderr, "cannot write %s\n", argv[3]);
            rc = 1;
        }
    }

    /* 5. Every handle has its free function; each accepts NULL. */
    cbx_audio_free(audio);
    cbx_voice_free(voice);
    cbx_engine_free(engine);
    return rc;
}
