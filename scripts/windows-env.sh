# Sourced by the Windows build and test scripts: the cross toolchain from Debian's packages
# (rustc-web/cargo-web/rust-web-src 1.96 build std for x86_64-pc-windows-gnu with
# -Zbuild-std; mingw-w64's posix-threads gcc links), a target folder of its own so the
# Linux build's artefacts are never touched, and a headless Wine prefix.
WIN_TARGET=x86_64-pc-windows-gnu
WIN_CARGO=/usr/bin/cargo
export RUSTC=/usr/bin/rustc
export RUSTDOC=/usr/bin/rustdoc
# -Zbuild-std on a stable compiler: Debian's rustc-web is stable and ships no Windows std.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc-posix
export CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc-posix
export AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_WINDOWS:-$ROOT/target/windows}"
WIN_OUT="$CARGO_TARGET_DIR/$WIN_TARGET/debug"
export WINEPREFIX="${WINEPREFIX:-$ROOT/target/windows/wineprefix}"
export WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml="
