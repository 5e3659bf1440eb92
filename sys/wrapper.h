/* Input of sys/regen.sh: the three DVB API v5 headers capbox binds. */
#include <linux/dvb/frontend.h>
#include <linux/dvb/dmx.h>
#include <linux/dvb/ca.h>
