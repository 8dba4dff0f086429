/* Test helper, never shipped: adds a DER certificate to a Windows system certificate store
 * through the CryptoAPI (CertAddEncodedCertificateToStore), as an administrator importing the
 * terminal's certificate would; Wine 8 has no certutil. tests/tests/windows.rs runs it under
 * Wine, then expects the agent's inventory to list the certificate.
 *
 *   certstore-add.exe local_machine|current_user STORE FILE.der
 */
#include <windows.h>
#include <wincrypt.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  static BYTE der[65536];
  DWORD location;
  if (argc != 4) {
    fprintf(stderr, "usage: certstore-add local_machine|current_user STORE FILE.der\n");
    return 2;
  }
  if (strcmp(argv[1], "local_machine") == 0) {
    location = CERT_SYSTEM_STORE_LOCAL_MACHINE;
  } else if (strcmp(argv[1], "current_user") == 0) {
    location = CERT_SYSTEM_STORE_CURRENT_USER;
  } else {
    fprintf(stderr, "unknown store location %s\n", argv[1]);
    return 2;
  }
  FILE *file = fopen(argv[3], "rb");
  if (!file) {
    perror(argv[3]);
    return 1;
  }
  size_t len = fread(der, 1, sizeof der, file);
  fclose(file);
  HCERTSTORE store = CertOpenStore(CERT_STORE_PROV_SYSTEM_A, 0, 0, location, argv[2]);
  if (!store) {
    fprintf(stderr, "CertOpenStore %s: error %lu\n", argv[2], GetLastError());
    return 1;
  }
  if (!CertAddEncodedCertificateToStore(store, X509_ASN_ENCODING, der, (DWORD)len,
                                        CERT_STORE_ADD_REPLACE_EXISTING, NULL)) {
    fprintf(stderr, "CertAddEncodedCertificateToStore: error %lu\n", GetLastError());
    CertCloseStore(store, 0);
    return 1;
  }
  CertCloseStore(store, 0);
  return 0;
}
