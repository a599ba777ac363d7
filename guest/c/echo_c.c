/* A sandpool task written in C against guest ABI v1 (docs/abi.md).
 *
 * Echo: the output value is the input value, so the output payload is the
 * input's bincode bytes unchanged. It also keeps a global call counter and
 * traps on an empty input, so the host's isolation tests can run on it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *output;
static uint32_t calls;

__attribute__((export_name("sandpool_abi_version"))) uint32_t sandpool_abi_version(void) { return 1; }

__attribute__((export_name("sandpool_alloc"))) uint8_t *sandpool_alloc(uint32_t len) {
    return malloc(len ? len : 1);
}

__attribute__((export_name("sandpool_run"))) uint64_t sandpool_run(uint8_t *input, uint32_t len) {
    calls += 1;
    if (len == 0) {
        __builtin_trap(); /* host reports a trap for this task only */
    }
    free(output);
    output = malloc(1 + len);
    if (!output) {
        __builtin_trap();
    }
    if (calls != 1) {
        /* State leaked from an earlier task: report it as a task error. */
        static const char msg[] = "state leaked between tasks";
        output[0] = 1; /* TAG_GUEST_ERROR */
        memcpy(output + 1, msg, sizeof msg - 1);
        free(input);
        return ((uint64_t)(uintptr_t)output << 32) | (sizeof msg);
    }
    output[0] = 0; /* TAG_OK */
    memcpy(output + 1, input, len);
    free(input);
    return ((uint64_t)(uintptr_t)output << 32) | (uint64_t)(1 + len);
}
