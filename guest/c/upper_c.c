/* A sandpool task in C that calls a host capability through the raw
 * `sandpool_v1` imports (docs/abi.md, "Capabilities"), without the Rust SDK.
 *
 * It declares the capability `text.upper` in the `sandpool.capabilities`
 * custom section, sends its input payload (a bincode string) unchanged as
 * the request, and returns the response payload unchanged as its output.
 * An input of one byte 0xFF asks it to call the undeclared `text.lower`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The declaration: a custom section, names each ended by '\n'. */
__asm__(".section .custom_section.sandpool.capabilities,\"\",@\n"
        ".ascii \"text.upper\\n\"\n"
        ".text\n");

__attribute__((import_module("sandpool_v1"), import_name("call")))
int64_t sandpool_call(const char *name, uint32_t name_len, const uint8_t *req, uint32_t req_len);
__attribute__((import_module("sandpool_v1"), import_name("call_result")))
int32_t sandpool_call_result(uint8_t *out, uint32_t len);

static uint8_t *output;

__attribute__((export_name("sandpool_abi_version"))) uint32_t sandpool_abi_version(void) { return 1; }

__attribute__((export_name("sandpool_alloc"))) uint8_t *sandpool_alloc(uint32_t len) {
    return malloc(len ? len : 1);
}

static uint64_t fail(const char *msg) {
    size_t n = strlen(msg);
    free(output);
    output = malloc(1 + n);
    output[0] = 1; /* TAG_GUEST_ERROR */
    memcpy(output + 1, msg, n);
    return ((uint64_t)(uintptr_t)output << 32) | (uint64_t)(1 + n);
}

__attribute__((export_name("sandpool_run"))) uint64_t sandpool_run(uint8_t *input, uint32_t len) {
    const char *name = (len == 1 && input[0] == 0xff) ? "text.lower" : "text.upper";
    int64_t n = sandpool_call(name, (uint32_t)strlen(name), input, len);
    free(input);
    if (n < 0) {
        return fail("the host refused the call");
    }
    free(output);
    output = malloc(1 + (size_t)n);
    if (!output) {
        __builtin_trap();
    }
    output[0] = 0; /* TAG_OK */
    if (n > 0 && sandpool_call_result(output + 1, (uint32_t)n) != n) {
        return fail("call_result did not return the whole response");
    }
    /* Nothing waits any more: a second fetch says so (-1). */
    if (sandpool_call_result(output + 1, (uint32_t)n) != -1) {
        return fail("a response was fetched twice");
    }
    return ((uint64_t)(uintptr_t)output << 32) | (uint64_t)(1 + n);
}
