include $(sort $(wildcard $(BR2_EXTERNAL_CAPBOX_PATH)/package/*/*.mk))
