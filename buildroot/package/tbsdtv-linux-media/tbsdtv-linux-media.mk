################################################################################
#
# tbsdtv-linux-media
#
################################################################################

# media_build (the out-of-tree build scripts and backports) is the main
# download; linux_media (a whole kernel tree, of which media_build uses
# drivers/media and friends) and the firmware are extra downloads. The two
# trees move together: bump both to commits of the same day.
TBSDTV_LINUX_MEDIA_VERSION = cd0b4b6c2ef7eedf48a2da4becdaad2710636535
TBSDTV_LINUX_MEDIA_SITE = $(call github,tbsdtv,media_build,$(TBSDTV_LINUX_MEDIA_VERSION))
TBSDTV_LINUX_MEDIA_TREE_VERSION = af8890e8f6bb4c7ebe6d83f0491b7e8cd42d92ae
TBSDTV_LINUX_MEDIA_TREE_SOURCE = linux_media-$(TBSDTV_LINUX_MEDIA_TREE_VERSION).tar.gz
TBSDTV_LINUX_MEDIA_FIRMWARE_SOURCE = tbs-tuner-firmwares_v1.0.tar.bz2
TBSDTV_LINUX_MEDIA_EXTRA_DOWNLOADS = \
	https://github.com/tbsdtv/linux_media/archive/$(TBSDTV_LINUX_MEDIA_TREE_VERSION)/$(TBSDTV_LINUX_MEDIA_TREE_SOURCE) \
	http://www.tbsdtv.com/download/document/linux/$(TBSDTV_LINUX_MEDIA_FIRMWARE_SOURCE)
TBSDTV_LINUX_MEDIA_LICENSE = GPL-2.0 (drivers), PROPRIETARY (firmware)
TBSDTV_LINUX_MEDIA_DEPENDENCIES = linux

define TBSDTV_LINUX_MEDIA_EXTRACT_EXTRA
	mkdir -p $(@D)/media $(@D)/tbs-firmware
	$(call suitable-extractor,$(TBSDTV_LINUX_MEDIA_TREE_SOURCE)) \
		$(TBSDTV_LINUX_MEDIA_DL_DIR)/$(TBSDTV_LINUX_MEDIA_TREE_SOURCE) | \
		$(TAR) --strip-components=1 -C $(@D)/media $(TAR_OPTIONS) -
	$(call suitable-extractor,$(TBSDTV_LINUX_MEDIA_FIRMWARE_SOURCE)) \
		$(TBSDTV_LINUX_MEDIA_DL_DIR)/$(TBSDTV_LINUX_MEDIA_FIRMWARE_SOURCE) | \
		$(TAR) -C $(@D)/tbs-firmware $(TAR_OPTIONS) -
endef
TBSDTV_LINUX_MEDIA_POST_EXTRACT_HOOKS += TBSDTV_LINUX_MEDIA_EXTRACT_EXTRA

# media_build's own steps ("make dir DIR=<media tree>", "make
# allyesconfig", "make"), pointed at Buildroot's kernel (v4l/Makefile reads
# the kernel version from $(DIR)/Makefile and builds with
# "make -C <kernel> M=v4l modules") and its cross compiler.
TBSDTV_LINUX_MEDIA_MAKE_OPTS = \
	$(LINUX_MAKE_FLAGS) \
	DIR=$(LINUX_DIR) \
	SRCDIR=$(LINUX_DIR) \
	OUTDIR=$(LINUX_DIR)

define TBSDTV_LINUX_MEDIA_BUILD_CMDS
	$(TARGET_MAKE_ENV) $(MAKE1) -C $(@D) dir DIR=$(@D)/media
	$(TARGET_MAKE_ENV) $(MAKE1) -C $(@D)/v4l \
		$(TBSDTV_LINUX_MEDIA_MAKE_OPTS) allyesconfig
	$(TARGET_MAKE_ENV) $(MAKE) -C $(@D)/v4l \
		$(TBSDTV_LINUX_MEDIA_MAKE_OPTS)
endef

# Into updates/, which depmod and modprobe prefer over the kernel's own
# media modules of the same name (dvb-core included). Buildroot runs
# depmod when it finalizes the target.
define TBSDTV_LINUX_MEDIA_INSTALL_TARGET_CMDS
	$(TARGET_MAKE_ENV) $(MAKE) -C $(LINUX_DIR) $(LINUX_MAKE_FLAGS) \
		M=$(@D)/v4l INSTALL_MOD_PATH=$(TARGET_DIR) \
		INSTALL_MOD_DIR=updates modules_install
	mkdir -p $(TARGET_DIR)/lib/firmware
	find $(@D)/tbs-firmware -type f -name '*.fw' \
		-exec $(INSTALL) -m 0644 -t $(TARGET_DIR)/lib/firmware {} +
endef

$(eval $(generic-package))
