/* QEMU TCG plugin (API v1): guest instructions executed per translated block, written as
 * "vaddr count" lines to the file named by the plugin argument out=PATH at exit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_plugin_v1.h"

struct rec { uint64_t vaddr, n, count; };
static struct rec **recs; static size_t nrecs, cap;
static char out_path[512] = "/tmp/insnprof.txt";

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    struct rec *r = calloc(1, sizeof *r);
    r->vaddr = qemu_plugin_tb_vaddr(tb);
    r->n = qemu_plugin_tb_n_insns(tb);
    if (nrecs == cap) { cap = cap ? cap * 2 : 4096; recs = realloc(recs, cap * sizeof *recs); }
    recs[nrecs++] = r;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &r->count, r->n);
}

static void at_exit(qemu_plugin_id_t id, void *p) {
    FILE *f = fopen(out_path, "w");
    if (!f) return;
    for (size_t i = 0; i < nrecs; i++)
        if (recs[i]->count) fprintf(f, "%llx %llu\n", (unsigned long long)recs[i]->vaddr,
                                    (unsigned long long)recs[i]->count);
    fclose(f);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
        const qemu_info_t *info, int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "out=", 4) == 0) snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
