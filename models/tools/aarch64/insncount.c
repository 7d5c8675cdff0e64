/* Minimal QEMU TCG plugin (QEMU 7.2 plugin API v1): counts guest instructions executed.
 * Debian's qemu-user ships no plugins and no qemu-plugin.h: the declarations used are in
 * qemu_plugin_v1.h. Build: gcc -shared -fPIC -O2 -o libinsncount.so insncount.c
 * Use:   qemu-aarch64 -cpu cortex-a72 -plugin ./libinsncount.so -d plugin BINARY ARGS
 * Prints "insns: N" at exit. Inline counter: exact for single-threaded guests. */
#include <stdio.h>

#include "qemu_plugin_v1.h"

static uint64_t insns;

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns,
                                             qemu_plugin_tb_n_insns(tb));
}

static void at_exit(qemu_plugin_id_t id, void *p) {
    char buf[64];
    snprintf(buf, sizeof buf, "insns: %llu\n", (unsigned long long)insns);
    qemu_plugin_outs(buf);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info, int argc,
                                                               char **argv) {
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
