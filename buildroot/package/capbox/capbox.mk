################################################################################
#
# capbox
#
################################################################################

# The source is the repository this BR2_EXTERNAL tree lives in (its
# buildroot/ folder), fetched with Buildroot's git method at the commit
# checked out there. Why git and not the other methods:
#  - "local" (rsync of the working copy) skips the download step, so the
#    cargo post-process never vendors the crates and the offline cargo
#    build fails;
#  - "file" needs a ready-made tarball next to the tree;
#  - "git" clones the local repository (no network), archives the commit
#    reproducibly and hands the tarball to support/download/cargo-post-process,
#    which runs "cargo vendor --locked" against crates.io. The result,
#    $(DL_DIR)/capbox/$(CAPBOX_SOURCE), builds offline.
# Uncommitted changes are not built: commit first, or build another commit
# or tag with "make CAPBOX_VERSION=<commit or tag> ...".
CAPBOX_SITE = $(realpath $(BR2_EXTERNAL_CAPBOX_PATH)/..)
CAPBOX_SITE_METHOD = git
CAPBOX_VERSION := $(shell git -C $(CAPBOX_SITE) rev-parse --verify -q HEAD 2>/dev/null)
CAPBOX_LICENSE = GPL-2.0+

ifeq ($(BR2_PACKAGE_CAPBOX)$(CAPBOX_VERSION),y)
$(error capbox: $(CAPBOX_SITE) is not a git checkout; set CAPBOX_VERSION=<commit>)
endif

# The [profile.release] of Cargo.toml asks for thin LTO; Buildroot turns
# LTO off unless BR2_ENABLE_LTO. Keep the project's choice (smaller and
# faster binary). panic = "abort" comes from Cargo.toml as is.
CAPBOX_CARGO_ENV = CARGO_PROFILE_RELEASE_LTO=thin

# Buildroot 2026.02.3 ships rustc 1.88.0, but the AVX-512 path of the CSA
# descrambler (src/ca/csa/bitslice.rs) uses the AVX-512 target features and
# intrinsics that became stable in 1.89 (with the same API). With an older
# rustc, turn them on as the feature gates they were; with >= 1.89 nothing
# is added. (Checked: the vendored tarball passes "cargo check" with
# Buildroot's host rustc 1.88.0 this way, tests/buildroot_tree.rs.)
CAPBOX_RUSTC_VERSION = $(if $(BR2_PACKAGE_HOST_RUST),$(RUST_VERSION),$(RUST_BIN_VERSION))
CAPBOX_RUSTC_BEFORE_1_89 = $(filter-out 1.89.0,$(firstword $(shell printf '%s\n' 1.89.0 $(CAPBOX_RUSTC_VERSION) | sort -V)))
ifneq ($(CAPBOX_RUSTC_BEFORE_1_89),)
CAPBOX_CARGO_ENV += \
	RUSTC_BOOTSTRAP=1 \
	CARGO_TARGET_$(call UPPERCASE,$(RUSTC_TARGET_NAME))_RUSTFLAGS="-Zcrate-attr=feature(avx512_target_feature,stdarch_x86_avx512)"
endif

# Default features: "pcsc" (the card manager, which dlopen()s
# libpcsclite.so.1 from pcsc-lite at run time). Dynamic linking against
# the toolchain's C library: a static binary cannot dlopen, and
# BR2_STATIC_LIBS is excluded in Config.in.

# pcscd talks to the readers; ccid is its USB driver. No build-time
# dependency (no libpcsclite-dev needed to build capbox), but pulled in
# before capbox so the rootfs has them.
CAPBOX_DEPENDENCIES = pcsc-lite ccid

define CAPBOX_USERS
	capbox -1 capbox -1 * - - video capbox service user (DVB, card readers)
endef

ifeq ($(BR2_PACKAGE_HAS_UDEV),y)
define CAPBOX_INSTALL_UDEV_RULES
	$(INSTALL) -D -m 0644 $(@D)/udev/60-capbox-dvb.rules \
		$(TARGET_DIR)/lib/udev/rules.d/60-capbox-dvb.rules
endef
CAPBOX_POST_INSTALL_TARGET_HOOKS += CAPBOX_INSTALL_UDEV_RULES
endif

$(eval $(cargo-package))

# The version follows the repository's HEAD: a hash file cannot pin it.
# The commit id names the tarball, and Cargo.lock (--locked) plus the
# checksums cargo vendor writes pin every crate.
BR_NO_CHECK_HASH_FOR += $(CAPBOX_SOURCE)
