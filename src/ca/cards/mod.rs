pub struct CwPair {
    pub even: Option<[u8; 8]>,
    pub odd: Option<[u8; 8]>,
}
pub trait EcmClient: Send + Sync {
    fn ecm(
        &self,
        caid: u16,
        section: Vec<u8>,
        done: Box<dyn FnOnce(Result<CwPair, String>) + Send>,
    ) -> Result<(), String>;
    fn emm(&self, caid: u16, section: Vec<u8>) -> Result<bool, String>; // Ok(false): filtered out (not for this card)
}
