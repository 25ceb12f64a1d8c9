/* dispatch.c: picks the kernel table at run time.
 *
 * On x86-64 the CPU is asked (CPUID) which instruction sets it has and the OS (XGETBV) whether it
 * saves the YMM / ZMM registers across context switches; only then are the AVX2 or AVX-512 tables
 * offered, the AVX-512 ones with VNNI (CPUID.7.0:ECX[11]) and BF16 (CPUID.7.1:EAX[5]) when the CPU has
 * them, and AVX2's with AVX-VNNI (CPUID.7.1:EAX[4]). On ARM64 NEON is part of the base architecture;
 * the dotprod and bf16 tables are offered when the kernel reports the features (getauxval:
 * HWCAP_ASIMDDP, HWCAP2_BF16). A table the compiler could not build (configure checks the -m flags) is
 * never offered.
 *
 * SASP_SIMD picks one by hand (for tests and benchmarks): a table's id (scalar, avx2, avx2-vnni, avx512,
 * avx512-vnni, avx512-bf16, neon, neon-dotprod, neon-bf16), or an instruction set's name for its best
 * table; a value this build or CPU cannot run is reported on stderr and the best available table is
 * used instead. The choice is made once, thread-safely (pthread_once). */
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
    __asm__ volatile("xgetbv"
                     : "=a"(lo), "=d"(hi)
                     : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

typedef struct {
    int avx2, avx_vnni, avx512, vnni, bf16;
} x86_caps;

/* Which of the x86 tables this CPU and OS can run. The AVX-512 files are compiled with F, VL, BW and
 * DQ (the compiler may use any of them), the AVX2 one with FMA and F16C, so all of those are required;
 * AVX-512's VNNI and BF16 only count with AVX-512, AVX-VNNI with AVX2. */
static x86_caps x86_features(void)
{
    x86_caps c = {0, 0, 0, 0, 0};
    unsigned int a, b, cx, d;
    if (!__get_cpuid(1, &a, &b, &cx, &d)) return c;
    int osxsave = (cx >> 27) & 1, avx = (cx >> 28) & 1, fma = (cx >> 12) & 1, f16c = (cx >> 29) & 1;
    if (!osxsave || !avx) return c;
    unsigned long long xcr0 = read_xcr0();
    int os_ymm = (xcr0 & 0x6) == 0x6;   /* XMM and YMM state */
    int os_zmm = (xcr0 & 0xe6) == 0xe6; /* plus opmask, ZMM_Hi256, Hi16_ZMM */
    if (__get_cpuid_max(0, NULL) < 7) return c;
    __cpuid_count(7, 0, a, b, cx, d);
    unsigned int max_sub = a;
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1,
        avx512vl = (b >> 31) & 1, vnni = (cx >> 11) & 1, bf16 = 0, avx_vnni = 0;
    if (max_sub >= 1) {
        __cpuid_count(7, 1, a, b, cx, d);
        avx_vnni = (a >> 4) & 1;
        bf16 = (a >> 5) & 1;
    }
    c.avx2 = os_ymm && avx2 && fma && f16c;
    c.avx_vnni = c.avx2 && avx_vnni;
    c.avx512 = c.avx2 && os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
    c.vnni = c.avx512 && vnni;
    c.bf16 = c.vnni && bf16; /* the bf16 table is built with VNNI too (every such CPU has both) */
    return c;
}
#endif

#ifdef SASP_HAVE_NEON
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1ul << 20)
#endif
#ifndef HWCAP2_BF16
#define HWCAP2_BF16 (1ul << 14)
#endif
#endif

/* The tables this build and CPU can run, best last. */
static const sasp_kernels *usable[SASP_KERNELS_MAX];
static int n_usable;
static const sasp_kernels *active;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void offer(const sasp_kernels *k)
{
    if (n_usable < SASP_KERNELS_MAX) usable[n_usable++] = k;
}

static void detect(void)
{
    offer(&sasp_kernels_scalar);
#ifdef SASP_HAVE_X86
    x86_caps c = x86_features();
    if (c.avx2) offer(&sasp_kernels_avx2);
#ifdef SASP_HAVE_AVX_VNNI
    if (c.avx_vnni) offer(&sasp_kernels_avx2_vnni);
#endif
    if (c.avx512) offer(&sasp_kernels_avx512);
#ifdef SASP_HAVE_AVX512_VNNI
    if (c.vnni) offer(&sasp_kernels_avx512_vnni);
#endif
#ifdef SASP_HAVE_AVX512_BF16
    if (c.bf16) offer(&sasp_kernels_avx512_bf16);
#endif
#endif
#ifdef SASP_HAVE_NEON
    offer(&sasp_kernels_neon);
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    int dotprod = (hw & HWCAP_ASIMDDP) != 0, bf16 = dotprod && (hw2 & HWCAP2_BF16) != 0;
    (void)dotprod, (void)bf16;
#ifdef SASP_HAVE_NEON_DOTPROD
    if (dotprod) offer(&sasp_kernels_neon_dotprod);
#endif
#ifdef SASP_HAVE_NEON_BF16
    if (bf16) offer(&sasp_kernels_neon_bf16);
#endif
#endif
}

/* The table of that id, else the best of that instruction set. */
static const sasp_kernels *find(const char *name, int by_isa)
{
    for (int i = 0; i < n_usable; i++)
        if (strcmp(usable[i]->id, name) == 0) return usable[i];
    if (by_isa)
        for (int i = n_usable - 1; i >= 0; i--)
            if (strcmp(usable[i]->name, name) == 0) return usable[i];
    return NULL;
}

static void init(void)
{
    detect();
    active = usable[n_usable - 1];
    const char *want = getenv("SASP_SIMD");
    if (want && *want) {
        const sasp_kernels *k = find(want, 1);
        if (k) {
            active = k;
        } else {
            fprintf(stderr, "sasp: SASP_SIMD=%s is not available on this build or CPU (available:", want);
            for (int i = 0; i < n_usable; i++) fprintf(stderr, " %s", usable[i]->id);
            fprintf(stderr, "); using %s\n", active->id);
        }
    }
}

const sasp_kernels *sasp_kernels_active(void)
{
    pthread_once(&once, init);
    return active;
}

const sasp_kernels *sasp_kernels_by_name(const char *id)
{
    pthread_once(&once, init);
    return id ? find(id, 0) : NULL;
}

int sasp_kernels_available(const sasp_kernels **out, int max)
{
    pthread_once(&once, init);
    int n = n_usable < max ? n_usable : max;
    for (int i = 0; i < n; i++) out[i] = usable[i];
    return n;
}
