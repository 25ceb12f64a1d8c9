/* dispatch.c: picks the kernel table at run time.
 *
 * On x86-64 the CPU is asked (CPUID) which instruction sets it has and the OS (XGETBV) whether it
 * saves the YMM / ZMM registers across context switches; only then are the AVX2 or AVX-512 tables
 * offered. On ARM64 NEON is part of the base architecture. SASP_SIMD=scalar|avx2|avx512|neon picks one
 * by hand (for tests and benchmarks); a value this build or CPU cannot run is reported on stderr and
 * the best available table is used instead. The choice is made once, thread-safely (pthread_once). */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#ifdef SASP_HAVE_X86
#include <cpuid.h>

static unsigned long long read_xcr0(void)
{
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

/* Which of the x86 tables this CPU and OS can run. The AVX-512 file is compiled with F, VL, BW and DQ
 * (the compiler may use any of them), the AVX2 one with FMA and F16C, so all of those are required. */
static void x86_features(int *has_avx2, int *has_avx512)
{
    unsigned int a, b, c, d;
    *has_avx2 = *has_avx512 = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return;
    unsigned long long xcr0 = read_xcr0();
    int os_ymm = (xcr0 & 0x6) == 0x6;            /* XMM and YMM state */
    int os_zmm = (xcr0 & 0xe6) == 0xe6;          /* plus opmask, ZMM_Hi256, Hi16_ZMM */
    if (__get_cpuid_max(0, NULL) < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
        avx512vl = (b >> 31) & 1;
    *has_avx2 = os_ymm && avx2 && fma && f16c;
    *has_avx512 = *has_avx2 && os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
}
#endif

/* The tables this build and CPU can run, best last. */
static const sasp_kernels *usable[4];
static int n_usable;
static const sasp_kernels *active;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void detect(void)
{
    usable[n_usable++] = &sasp_kernels_scalar;
#ifdef SASP_HAVE_X86
    int has_avx2, has_avx512;
    x86_features(&has_avx2, &has_avx512);
    if (has_avx2) usable[n_usable++] = &sasp_kernels_avx2;
    if (has_avx512) usable[n_usable++] = &sasp_kernels_avx512;
#endif
#ifdef SASP_HAVE_NEON
    usable[n_usable++] = &sasp_kernels_neon;
#endif
}

static const sasp_kernels *find(const char *name)
{
    for (int i = 0; i < n_usable; i++)
        if (strcmp(usable[i]->name, name) == 0) return usable[i];
    return NULL;
}

static void init(void)
{
    detect();
    active = usable[n_usable - 1];
    const char *want = getenv("SASP_SIMD");
    if (want && *want) {
        const sasp_kernels *k = find(want);
        if (k)
            active = k;
        else
            fprintf(stderr, "sasp: SASP_SIMD=%s is not available on this build or CPU "
                            "(expected one of scalar, avx2, avx512, neon); using %s\n",
                    want, active->name);
    }
}

const sasp_kernels *sasp_kernels_active(void)
{
    pthread_once(&once, init);
    return active;
}

const sasp_kernels *sasp_kernels_by_name(const char *name)
{
    pthread_once(&once, init);
    return name ? find(name) : NULL;
}

int sasp_kernels_available(const sasp_kernels **out, int max)
{
    pthread_once(&once, init);
    int n = n_usable < max ? n_usable : max;
    for (int i = 0; i < n; i++) out[i] = usable[i];
    return n;
}
