/*
 * TEST FIXTURE, NEVER SHIPPED. Wine 8 (Debian bookworm) has no bcryptprimitives.dll, whose
 * ProcessPrng the Rust standard library imports for its randomness (HashMap keys, ...), so a
 * Rust .exe does not start under it. This DLL, built with mingw by `make test-windows` and
 * placed beside the test executables only (never beside the binary `make windows` ships),
 * exports ProcessPrng on top of RtlGenRandom (advapi32's SystemFunction036), which Wine has.
 * Real Windows (10 and later) has the real DLL in System32.
 */
#include <windows.h>
#define SECURITY_WIN32
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
