//! PC/SC through pcsc-lite's client library, `libpcsclite.so.1`, loaded
//! when the card manager first needs it (dlopen) instead of linked at build
//! time: building capbox needs no `libpcsclite-dev` and no pkg-config, and
//! a box without the library runs everything but the card manager, which
//! says what to install.
//!
//! Owns: the one handle on the library (opened once, never closed) and the
//! safe types over it: `Context` (SCARDCONTEXT), `Card` (SCARDHANDLE),
//! `Transaction`, `ReaderState` (SCARD_READERSTATE) and `Error` (the LONG
//! result codes, in words).
//!
//! Promises: nothing here panics on what pcscd answers (lengths are clamped
//! to the buffers given); every buffer is bounded; handles are released
//! when dropped (a context by SCardReleaseContext, a card by SCardDisconnect
//! with reset, a transaction by SCardEndTransaction leaving the card), as
//! the `pcsc` crate that this module replaces did.
//!
//! The ABI is pcsc-lite's on Linux (`/usr/include/PCSC/`): DWORD is
//! `unsigned long`, LONG is `long`, SCARD_READERSTATE is not packed and
//! holds a 33-byte ATR. `tests/pcsclite_layout.rs` checks every size,
//! offset and constant here against those headers with a C compiler.

use std::ffi::{c_char, c_long, c_ulong, c_void, CStr, CString};
use std::fmt;
use std::ptr::{null, null_mut};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The soname of pcsc-lite's client library (Debian package `libpcsclite1`).
pub const LIBRARY: &str = "libpcsclite.so.1";

/// What to install, said whenever the library cannot be loaded.
pub const INSTALL_HINT: &str = "smart cards need libpcsclite1: apt-get install libpcsclite1 pcscd";

/// The C types and constants of `pcsclite.h`/`winscard.h`, as pcsc-lite
/// defines them on Linux. Public for the layout test.
#[allow(non_camel_case_types, non_snake_case)]
pub mod ffi {
    use super::*;

    pub type DWORD = c_ulong;
    pub type LONG = c_long;
    pub type SCARDCONTEXT = LONG;
    pub type SCARDHANDLE = LONG;

    pub const MAX_ATR_SIZE: usize = 33;
    /// pcsc-lite's largest extended APDU (MAX_BUFFER_SIZE_EXTENDED).
    pub const MAX_BUFFER_SIZE_EXTENDED: usize = 4 + 3 + (1 << 16) + 3 + 2;

    #[repr(C)]
    pub struct SCARD_READERSTATE {
        pub szReader: *const c_char,
        pub pvUserData: *mut c_void,
        pub dwCurrentState: DWORD,
        pub dwEventState: DWORD,
        pub cbAtr: DWORD,
        pub rgbAtr: [u8; MAX_ATR_SIZE],
    }

    #[repr(C)]
    pub struct SCARD_IO_REQUEST {
        pub dwProtocol: DWORD,
        pub cbPciLength: DWORD,
    }

    pub const SCARD_S_SUCCESS: LONG = 0;
    pub const SCARD_SCOPE_USER: DWORD = 0;
    pub const SCARD_SHARE_SHARED: DWORD = 2;
    pub const SCARD_PROTOCOL_T0: DWORD = 1;
    pub const SCARD_PROTOCOL_T1: DWORD = 2;
    pub const SCARD_PROTOCOL_RAW: DWORD = 4;
    pub const SCARD_LEAVE_CARD: DWORD = 0;
    pub const SCARD_RESET_CARD: DWORD = 1;
    pub const INFINITE: DWORD = 0xFFFF_FFFF;

    pub const SCARD_STATE_UNAWARE: DWORD = 0x0000;
    pub const SCARD_STATE_IGNORE: DWORD = 0x0001;
    pub const SCARD_STATE_CHANGED: DWORD = 0x0002;
    pub const SCARD_STATE_UNKNOWN: DWORD = 0x0004;
    pub const SCARD_STATE_UNAVAILABLE: DWORD = 0x0008;
    pub const SCARD_STATE_EMPTY: DWORD = 0x0010;
    pub const SCARD_STATE_PRESENT: DWORD = 0x0020;
    pub const SCARD_STATE_MUTE: DWORD = 0x0200;

    pub type EstablishContext =
        unsafe extern "C" fn(DWORD, *const c_void, *const c_void, *mut SCARDCONTEXT) -> LONG;
    pub type ReleaseContext = unsafe extern "C" fn(SCARDCONTEXT) -> LONG;
    pub type ListReaders =
        unsafe extern "C" fn(SCARDCONTEXT, *const c_char, *mut c_char, *mut DWORD) -> LONG;
    pub type GetStatusChange =
        unsafe extern "C" fn(SCARDCONTEXT, DWORD, *mut SCARD_READERSTATE, DWORD) -> LONG;
    pub type Connect = unsafe extern "C" fn(
        SCARDCONTEXT,
        *const c_char,
        DWORD,
        DWORD,
        *mut SCARDHANDLE,
        *mut DWORD,
    ) -> LONG;
    pub type Reconnect = unsafe extern "C" fn(SCARDHANDLE, DWORD, DWORD, DWORD, *mut DWORD) -> LONG;
    pub type Disconnect = unsafe extern "C" fn(SCARDHANDLE, DWORD) -> LONG;
    pub type BeginTransaction = unsafe extern "C" fn(SCARDHANDLE) -> LONG;
    pub type EndTransaction = unsafe extern "C" fn(SCARDHANDLE, DWORD) -> LONG;
    pub type Status = unsafe extern "C" fn(
        SCARDHANDLE,
        *mut c_char,
        *mut DWORD,
        *mut DWORD,
        *mut DWORD,
        *mut u8,
        *mut DWORD,
    ) -> LONG;
    pub type Transmit = unsafe extern "C" fn(
        SCARDHANDLE,
        *const SCARD_IO_REQUEST,
        *const u8,
        DWORD,
        *mut SCARD_IO_REQUEST,
        *mut u8,
        *mut DWORD,
    ) -> LONG;
}

use ffi::{DWORD, LONG};

/// The name pcsc-lite gives its plug-and-play pseudo-reader: a
/// `ReaderState` with this name changes when readers come or go.
pub const PNP_NOTIFICATION: &CStr = c"\\\\?PnP?\\Notification";

/// The library's entry points, resolved once.
pub struct Lib {
    establish: ffi::EstablishContext,
    release: ffi::ReleaseContext,
    list_readers: ffi::ListReaders,
    get_status_change: ffi::GetStatusChange,
    connect: ffi::Connect,
    reconnect: ffi::Reconnect,
    disconnect: ffi::Disconnect,
    begin_transaction: ffi::BeginTransaction,
    end_transaction: ffi::EndTransaction,
    status: ffi::Status,
    transmit: ffi::Transmit,
    t0_pci: *const ffi::SCARD_IO_REQUEST,
    t1_pci: *const ffi::SCARD_IO_REQUEST,
    raw_pci: *const ffi::SCARD_IO_REQUEST,
}

// SAFETY: `Lib` is immutable after loading: function pointers into a library
// that is never unloaded, and pointers to its `const` PCI structures.
// pcsc-lite's client functions may be called from any thread (it locks per
// context internally).
unsafe impl Send for Lib {}
// SAFETY: as for Send: nothing in `Lib` is ever written after `open`.
unsafe impl Sync for Lib {}

static LIB: OnceLock<Lib> = OnceLock::new();

/// The loaded library, loading it on the first call. A failure is not
/// remembered: the card manager asks again, so installing the package on
/// a running box is enough. Err says what to install and why it failed.
pub fn library() -> Result<&'static Lib, String> {
    if let Some(l) = LIB.get() {
        return Ok(l);
    }
    let lib = Lib::open().map_err(|why| format!("{INSTALL_HINT} ({why})"))?;
    // Two threads may both open it: dlopen counts references, and the
    // handle is never closed, so the loser's copy costs nothing.
    Ok(LIB.get_or_init(|| lib))
}

/// The last dlopen/dlsym error of this thread, in words.
fn dl_error() -> String {
    // SAFETY: dlerror takes no arguments; it returns NULL or a pointer to
    // a NUL-terminated string valid until the next dl* call on this thread,
    // which we copy at once.
    let p = unsafe { libc::dlerror() };
    if p.is_null() {
        return "unknown dlopen error".into();
    }
    // SAFETY: p is non-null and NUL-terminated (dlerror's contract).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Lib {
    fn open() -> Result<Lib, String> {
        let name = CString::new(LIBRARY).map_err(|e| e.to_string())?;
        // SAFETY: name is a valid C string; RTLD_NOW binds everything now
        // so a broken library fails here, not in the middle of a call;
        // RTLD_LOCAL keeps its symbols out of everyone else's way.
        let h = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if h.is_null() {
            return Err(dl_error());
        }
        Lib::resolve(h).inspect_err(|_| {
            // SAFETY: h came from dlopen above and nothing resolved from it
            // is kept (resolve failed): the reference can go.
            unsafe { libc::dlclose(h) };
        })
    }

    /// Every entry point of `h`, or which one is missing.
    fn resolve(h: *mut c_void) -> Result<Lib, String> {
        let sym = |s: &CStr| -> Result<*mut c_void, String> {
            // SAFETY: h is a live handle from dlopen (closed only if this
            // fails, and then nothing found here is kept), s is a valid C
            // string.
            let p = unsafe { libc::dlsym(h, s.as_ptr()) };
            if p.is_null() {
                Err(format!("{LIBRARY}: {}", dl_error()))
            } else {
                Ok(p)
            }
        };
        macro_rules! func {
            ($name:literal, $t:ty) => {{
                let p = sym($name)?;
                // SAFETY: `p` is the address of pcsc-lite's function of this
                // name, whose C prototype (winscard.h) the type `$t` spells
                // with pcsc-lite's Linux types; a function pointer and a
                // data pointer have the same size on every Linux target.
                unsafe { std::mem::transmute::<*mut c_void, $t>(p) }
            }};
        }
        Ok(Lib {
            establish: func!(c"SCardEstablishContext", ffi::EstablishContext),
            release: func!(c"SCardReleaseContext", ffi::ReleaseContext),
            list_readers: func!(c"SCardListReaders", ffi::ListReaders),
            get_status_change: func!(c"SCardGetStatusChange", ffi::GetStatusChange),
            connect: func!(c"SCardConnect", ffi::Connect),
            reconnect: func!(c"SCardReconnect", ffi::Reconnect),
            disconnect: func!(c"SCardDisconnect", ffi::Disconnect),
            begin_transaction: func!(c"SCardBeginTransaction", ffi::BeginTransaction),
            end_transaction: func!(c"SCardEndTransaction", ffi::EndTransaction),
            status: func!(c"SCardStatus", ffi::Status),
            transmit: func!(c"SCardTransmit", ffi::Transmit),
            t0_pci: sym(c"g_rgSCardT0Pci")?.cast_const().cast(),
            t1_pci: sym(c"g_rgSCardT1Pci")?.cast_const().cast(),
            raw_pci: sym(c"g_rgSCardRawPci")?.cast_const().cast(),
        })
    }
}

/// A PC/SC result code other than success.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Error(pub LONG);

// pcsc-lite defines its codes as `((LONG)0x801000xx)`: positive with a
// 64-bit LONG, negative with a 32-bit one; `u32 as LONG` converts the same.
macro_rules! codes {
    ($($name:ident = $code:literal, $c:literal, $text:literal;)*) => {
        impl Error {
            $(pub const $name: Error = Error($code as LONG);)*
            /// Every code with its C name (for the layout test).
            pub const ALL: &'static [(&'static str, Error)] = &[$(($c, Error::$name)),*];
            const TEXT: &'static [(Error, &'static str)] = &[$((Error::$name, $text)),*];
            fn text(self) -> Option<&'static str> {
                Error::TEXT.iter().find(|(e, _)| *e == self).map(|(_, t)| *t)
            }
        }
    };
}

codes! {
    INTERNAL_ERROR = 0x8010_0001_u32, "SCARD_F_INTERNAL_ERROR", "An internal consistency check failed";
    CANCELLED = 0x8010_0002_u32, "SCARD_E_CANCELLED", "The action was cancelled by an SCardCancel request";
    INVALID_HANDLE = 0x8010_0003_u32, "SCARD_E_INVALID_HANDLE", "The supplied handle was invalid";
    INVALID_PARAMETER = 0x8010_0004_u32, "SCARD_E_INVALID_PARAMETER", "One or more of the supplied parameters could not be properly interpreted";
    NO_MEMORY = 0x8010_0006_u32, "SCARD_E_NO_MEMORY", "Not enough memory available to complete this command";
    INSUFFICIENT_BUFFER = 0x8010_0008_u32, "SCARD_E_INSUFFICIENT_BUFFER", "The data buffer to receive returned data is too small for the returned data";
    UNKNOWN_READER = 0x8010_0009_u32, "SCARD_E_UNKNOWN_READER", "The specified reader name is not recognized";
    TIMEOUT = 0x8010_000A_u32, "SCARD_E_TIMEOUT", "The user-specified timeout value has expired";
    SHARING_VIOLATION = 0x8010_000B_u32, "SCARD_E_SHARING_VIOLATION", "The smart card cannot be accessed because of other connections outstanding";
    NO_SMARTCARD = 0x8010_000C_u32, "SCARD_E_NO_SMARTCARD", "The operation requires a Smart Card, but no Smart Card is currently in the device";
    PROTO_MISMATCH = 0x8010_000F_u32, "SCARD_E_PROTO_MISMATCH", "The requested protocols are incompatible with the protocol currently in use with the smart card";
    NOT_READY = 0x8010_0010_u32, "SCARD_E_NOT_READY", "The reader or smart card is not ready to accept commands";
    INVALID_VALUE = 0x8010_0011_u32, "SCARD_E_INVALID_VALUE", "One or more of the supplied parameters values could not be properly interpreted";
    COMM_ERROR = 0x8010_0013_u32, "SCARD_F_COMM_ERROR", "An internal communications error has been detected";
    UNKNOWN_ERROR = 0x8010_0014_u32, "SCARD_F_UNKNOWN_ERROR", "An internal error has been detected, but the source is unknown";
    NOT_TRANSACTED = 0x8010_0016_u32, "SCARD_E_NOT_TRANSACTED", "An attempt was made to end a non-existent transaction";
    READER_UNAVAILABLE = 0x8010_0017_u32, "SCARD_E_READER_UNAVAILABLE", "The specified reader is not currently available for use";
    NO_SERVICE = 0x8010_001D_u32, "SCARD_E_NO_SERVICE", "The Smart card resource manager is not running";
    SERVICE_STOPPED = 0x8010_001E_u32, "SCARD_E_SERVICE_STOPPED", "The Smart card resource manager has shut down";
    UNSUPPORTED_FEATURE = 0x8010_001F_u32, "SCARD_E_UNSUPPORTED_FEATURE", "This smart card does not support the requested feature";
    NO_READERS_AVAILABLE = 0x8010_002E_u32, "SCARD_E_NO_READERS_AVAILABLE", "Cannot find a smart card reader";
    UNSUPPORTED_CARD = 0x8010_0065_u32, "SCARD_W_UNSUPPORTED_CARD", "The reader cannot communicate with the card, due to ATR string configuration conflicts";
    UNRESPONSIVE_CARD = 0x8010_0066_u32, "SCARD_W_UNRESPONSIVE_CARD", "The smart card is not responding to a reset";
    UNPOWERED_CARD = 0x8010_0067_u32, "SCARD_W_UNPOWERED_CARD", "Power has been removed from the smart card, so that further communication is not possible";
    RESET_CARD = 0x8010_0068_u32, "SCARD_W_RESET_CARD", "The smart card has been reset, so any shared state information is invalid";
    REMOVED_CARD = 0x8010_0069_u32, "SCARD_W_REMOVED_CARD", "The smart card has been removed, so further communication is not possible";
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.text() {
            Some(t) => f.write_str(t),
            None => write!(f, "PC/SC error {:#x}", self.0),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let name = Error::ALL.iter().find(|(_, e)| e == self).map(|(n, _)| *n);
        match name {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "Error({:#x})", self.0),
        }
    }
}

impl std::error::Error for Error {}

fn check(rv: LONG) -> Result<(), Error> {
    if rv == ffi::SCARD_S_SUCCESS {
        Ok(())
    } else {
        Err(Error(rv))
    }
}

/// SCARD_STATE_* bits of a `ReaderState`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct State(pub DWORD);

impl State {
    pub const UNAWARE: State = State(ffi::SCARD_STATE_UNAWARE);
    pub const IGNORE: State = State(ffi::SCARD_STATE_IGNORE);
    pub const CHANGED: State = State(ffi::SCARD_STATE_CHANGED);
    pub const UNKNOWN: State = State(ffi::SCARD_STATE_UNKNOWN);
    pub const UNAVAILABLE: State = State(ffi::SCARD_STATE_UNAVAILABLE);
    pub const EMPTY: State = State(ffi::SCARD_STATE_EMPTY);
    pub const PRESENT: State = State(ffi::SCARD_STATE_PRESENT);
    pub const MUTE: State = State(ffi::SCARD_STATE_MUTE);

    /// Every bit of `other` is set.
    pub fn contains(self, other: State) -> bool {
        self.0 & other.0 == other.0
    }

    /// Some bit of `other` is set.
    pub fn intersects(self, other: State) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for State {
    type Output = State;
    fn bitor(self, o: State) -> State {
        State(self.0 | o.0)
    }
}

/// One entry of SCardGetStatusChange's array: a reader's name (owned) and
/// the state we know and the state pcscd reports.
#[repr(transparent)]
pub struct ReaderState {
    raw: ffi::SCARD_READERSTATE,
}

impl ReaderState {
    pub fn new(name: impl Into<CString>, current: State) -> ReaderState {
        ReaderState {
            raw: ffi::SCARD_READERSTATE {
                // Reclaimed in Drop.
                szReader: name.into().into_raw(),
                pvUserData: null_mut(),
                dwCurrentState: current.0,
                dwEventState: ffi::SCARD_STATE_UNAWARE,
                cbAtr: 0,
                rgbAtr: [0; ffi::MAX_ATR_SIZE],
            },
        }
    }

    pub fn name(&self) -> &CStr {
        // SAFETY: szReader came from CString::into_raw in `new` and is only
        // freed in Drop; pcscd never writes it (it is `const char *`).
        unsafe { CStr::from_ptr(self.raw.szReader) }
    }

    pub fn event_state(&self) -> State {
        State(self.raw.dwEventState)
    }

    /// The ATR pcscd reported (clamped to the 33-byte field).
    pub fn atr(&self) -> &[u8] {
        let n = (self.raw.cbAtr as usize).min(ffi::MAX_ATR_SIZE);
        &self.raw.rgbAtr[..n]
    }

    /// What was reported becomes what we know (event count included, so
    /// the PnP pseudo-reader does not report the same change for ever).
    pub fn sync_current_state(&mut self) {
        self.raw.dwCurrentState = self.raw.dwEventState;
    }
}

impl Drop for ReaderState {
    fn drop(&mut self) {
        // SAFETY: szReader came from CString::into_raw in `new` and is
        // freed only here, once.
        drop(unsafe { CString::from_raw(self.raw.szReader.cast_mut()) });
    }
}

struct ContextInner {
    lib: &'static Lib,
    handle: ffi::SCARDCONTEXT,
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        // SAFETY: handle came from SCardEstablishContext and is released
        // once, after every Card using it (they hold this Arc).
        unsafe { (self.lib.release)(self.handle) };
    }
}

/// A connection to pcscd (SCARDCONTEXT). Operations on one context are
/// serialised by pcsc-lite: use one per thread.
pub struct Context {
    inner: Arc<ContextInner>,
}

/// Longest reader list accepted (pcscd allows 16 readers of ≤ 128 bytes).
const MAX_READER_LIST: usize = 64 * 1024;

impl Context {
    /// SCardEstablishContext with user scope, through `lib`.
    pub fn establish(lib: &'static Lib) -> Result<Context, Error> {
        let mut handle: ffi::SCARDCONTEXT = 0;
        // SAFETY: the reserved arguments may be NULL; handle is a valid out
        // pointer for the duration of the call.
        check(unsafe { (lib.establish)(ffi::SCARD_SCOPE_USER, null(), null(), &mut handle) })?;
        Ok(Context {
            inner: Arc::new(ContextInner { lib, handle }),
        })
    }

    fn lib(&self) -> &'static Lib {
        self.inner.lib
    }

    /// The readers pcscd knows, in its order; empty when there are none.
    pub fn list_readers(&self) -> Result<Vec<CString>, Error> {
        // A reader may appear between asking the length and the list: ask
        // again a few times rather than report a transient error.
        for _ in 0..3 {
            let mut len: DWORD = 0;
            // SAFETY: groups NULL (all), readers NULL asks for the length,
            // len is a valid out pointer.
            let rv = unsafe {
                (self.lib().list_readers)(self.inner.handle, null(), null_mut(), &mut len)
            };
            if rv == Error::NO_READERS_AVAILABLE.0 {
                return Ok(Vec::new());
            }
            check(rv)?;
            let len = (len as usize).min(MAX_READER_LIST);
            if len == 0 {
                return Ok(Vec::new());
            }
            let mut buf = vec![0u8; len];
            let mut got = len as DWORD;
            // SAFETY: buf has `got` writable bytes; pcsc-lite writes at most
            // that many (or fails with INSUFFICIENT_BUFFER).
            let rv = unsafe {
                (self.lib().list_readers)(
                    self.inner.handle,
                    null(),
                    buf.as_mut_ptr().cast(),
                    &mut got,
                )
            };
            match rv {
                _ if rv == Error::NO_READERS_AVAILABLE.0 => return Ok(Vec::new()),
                _ if rv == Error::INSUFFICIENT_BUFFER.0 => continue,
                _ => check(rv)?,
            }
            buf.truncate((got as usize).min(len));
            return Ok(split_multi_string(&buf));
        }
        Err(Error::INSUFFICIENT_BUFFER)
    }

    /// SCardGetStatusChange: waits up to `timeout` for a change against
    /// each state's current state; the event states are filled in.
    pub fn get_status_change(
        &self,
        timeout: Duration,
        readers: &mut [ReaderState],
    ) -> Result<(), Error> {
        let ms = timeout.as_millis().min(u128::from(ffi::INFINITE - 1)) as DWORD;
        // SAFETY: ReaderState is repr(transparent) over SCARD_READERSTATE,
        // so the slice is a valid array of `len` entries; each szReader is a
        // live C string; pcsc-lite writes only the event state and ATR
        // fields, within the 33-byte ATR array.
        check(unsafe {
            (self.lib().get_status_change)(
                self.inner.handle,
                ms,
                readers.as_mut_ptr().cast(),
                readers.len() as DWORD,
            )
        })
    }

    /// SCardConnect in shared mode, T=0 or T=1.
    pub fn connect(&self, reader: &CStr) -> Result<Card, Error> {
        let mut handle: ffi::SCARDHANDLE = 0;
        let mut protocol: DWORD = 0;
        // SAFETY: reader is a valid C string; handle and protocol are valid
        // out pointers for the call.
        check(unsafe {
            (self.lib().connect)(
                self.inner.handle,
                reader.as_ptr(),
                ffi::SCARD_SHARE_SHARED,
                ffi::SCARD_PROTOCOL_T0 | ffi::SCARD_PROTOCOL_T1,
                &mut handle,
                &mut protocol,
            )
        })?;
        Ok(Card {
            context: self.inner.clone(),
            handle,
            protocol,
        })
    }
}

/// The NUL-separated, double-NUL-terminated list SCardListReaders returns.
fn split_multi_string(buf: &[u8]) -> Vec<CString> {
    buf.split(|&b| b == 0)
        .take_while(|s| !s.is_empty())
        .filter_map(|s| CString::new(s).ok())
        .collect()
}

/// A connection to the card in one reader (SCARDHANDLE).
pub struct Card {
    context: Arc<ContextInner>,
    handle: ffi::SCARDHANDLE,
    protocol: DWORD,
}

impl Card {
    fn lib(&self) -> &'static Lib {
        self.context.lib
    }

    /// SCardBeginTransaction: other contexts wait until it is dropped.
    pub fn transaction(&mut self) -> Result<Transaction<'_>, Error> {
        // SAFETY: handle is live (from SCardConnect, not yet disconnected).
        check(unsafe { (self.lib().begin_transaction)(self.handle) })?;
        Ok(Transaction { card: self })
    }

    /// SCardReconnect in shared mode, T=0 or T=1; `reset` resets the card.
    pub fn reconnect(&mut self, reset: bool) -> Result<(), Error> {
        let mut protocol: DWORD = 0;
        let init = if reset {
            ffi::SCARD_RESET_CARD
        } else {
            ffi::SCARD_LEAVE_CARD
        };
        // SAFETY: handle is live; protocol is a valid out pointer.
        check(unsafe {
            (self.lib().reconnect)(
                self.handle,
                ffi::SCARD_SHARE_SHARED,
                ffi::SCARD_PROTOCOL_T0 | ffi::SCARD_PROTOCOL_T1,
                init,
                &mut protocol,
            )
        })?;
        self.protocol = protocol;
        Ok(())
    }

    /// The card's ATR (SCardStatus); fails when the card was reset or
    /// pulled since the last call.
    pub fn atr(&self) -> Result<Vec<u8>, Error> {
        let mut atr = [0u8; ffi::MAX_ATR_SIZE];
        let mut atr_len = atr.len() as DWORD;
        let mut state: DWORD = 0;
        let mut protocol: DWORD = 0;
        // SAFETY: handle is live; the reader-name buffer and its length are
        // NULL (not wanted, pcsc-lite accepts that); atr has atr_len bytes
        // and pcsc-lite writes at most that many (MAX_ATR_SIZE); the other
        // out pointers are valid for the call.
        check(unsafe {
            (self.lib().status)(
                self.handle,
                null_mut(),
                null_mut(),
                &mut state,
                &mut protocol,
                atr.as_mut_ptr(),
                &mut atr_len,
            )
        })?;
        Ok(atr[..(atr_len as usize).min(atr.len())].to_vec())
    }

    /// SCardTransmit with the active protocol's PCI; the answer (data and
    /// status word) is the returned part of `buf`.
    pub fn transmit<'b>(&self, capdu: &[u8], buf: &'b mut [u8]) -> Result<&'b [u8], Error> {
        let pci = match self.protocol {
            ffi::SCARD_PROTOCOL_T0 => self.lib().t0_pci,
            ffi::SCARD_PROTOCOL_T1 => self.lib().t1_pci,
            ffi::SCARD_PROTOCOL_RAW => self.lib().raw_pci,
            _ => return Err(Error::PROTO_MISMATCH),
        };
        if capdu.len() > ffi::MAX_BUFFER_SIZE_EXTENDED {
            return Err(Error::INSUFFICIENT_BUFFER);
        }
        let cap = buf.len().min(ffi::MAX_BUFFER_SIZE_EXTENDED);
        let mut len = cap as DWORD;
        // SAFETY: handle is live; pci points at the library's own constant
        // PCI; capdu has capdu.len() readable bytes; buf has `len` writable
        // bytes and pcsc-lite writes at most that many; no receive PCI.
        check(unsafe {
            (self.lib().transmit)(
                self.handle,
                pci,
                capdu.as_ptr(),
                capdu.len() as DWORD,
                null_mut(),
                buf.as_mut_ptr(),
                &mut len,
            )
        })?;
        Ok(&buf[..(len as usize).min(cap)])
    }
}

impl Drop for Card {
    fn drop(&mut self) {
        // SAFETY: handle is live and disconnected only here. Reset, as the
        // `pcsc` crate did: the next user of the card starts clean.
        unsafe { (self.lib().disconnect)(self.handle, ffi::SCARD_RESET_CARD) };
    }
}

/// A card under SCardBeginTransaction; ends (leaving the card) on drop.
pub struct Transaction<'a> {
    card: &'a mut Card,
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Card;
    fn deref(&self) -> &Card {
        self.card
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        // SAFETY: the card handle is live (borrowed for our lifetime) and
        // its transaction was begun in `Card::transaction`.
        unsafe { (self.card.lib().end_transaction)(self.card.handle, ffi::SCARD_LEAVE_CARD) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_list_split() {
        let v = split_multi_string(b"A 00\0B 01\0\0");
        assert_eq!(v, vec![c"A 00".to_owned(), c"B 01".to_owned()]);
        assert!(split_multi_string(b"\0").is_empty());
        assert!(split_multi_string(b"").is_empty());
        // No terminator (a short answer): still no panic, last name kept.
        assert_eq!(split_multi_string(b"A"), vec![c"A".to_owned()]);
    }

    #[test]
    fn errors_in_words() {
        assert_eq!(
            Error::REMOVED_CARD.to_string(),
            "The smart card has been removed, so further communication is not possible"
        );
        assert_eq!(
            Error(0x8010_00ff_u32 as LONG).to_string(),
            "PC/SC error 0x801000ff"
        );
        assert_eq!(format!("{:?}", Error::NO_SERVICE), "SCARD_E_NO_SERVICE");
    }

    #[test]
    fn state_bits() {
        let s = State::PRESENT | State::CHANGED;
        assert!(s.contains(State::CHANGED));
        assert!(!s.contains(State::PRESENT | State::MUTE));
        assert!(s.intersects(State::MUTE | State::PRESENT));
        assert!(!s.intersects(State::UNAVAILABLE | State::UNKNOWN | State::IGNORE));
    }
}
