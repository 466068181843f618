/* Read the latest version of a dataset a Python process put, in place. */
#include <stdio.h>

#include "arrowshm.h"

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "prices";
    ash_ns *ns;
    ash_view v;
    if (ash_open(NULL, NULL, &ns) != ASH_OK) { /* $ARROWSHM_NAMESPACE, $ARROWSHM_DIR */
        fprintf(stderr, "%s\n", ash_errmsg());
        return 1;
    }
    int rc = ash_get(ns, name, 0, &v); /* 0: the latest version; pinned until released */
    if (rc == ASH_OK) {
        printf("%s version %llu: %llu rows, %llu bytes of Arrow IPC stream at %p\n", name,
               (unsigned long long)v.version, (unsigned long long)v.num_rows,
               (unsigned long long)v.length, (const void *)v.data);
        ash_release(&v); /* after the last use of v.data */
    } else {
        fprintf(stderr, "%s: %s\n", ash_strerror(rc), ash_errmsg());
    }
    ash_close(ns);
    return rc == ASH_OK ? 0 : 1;
}
