//! PC/SC readers through pcsc-lite (Linux, macOS) or WinSCard (Windows).

use std::ffi::CString;

use pcsc::{Card, Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};

use super::{require_status_word, Transport, TransportError};

/// One reader as PC/SC reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderInfo {
    pub name: String,
    pub card_present: bool,
    pub atr: Option<Vec<u8>>,
}

pub(crate) fn map_error(e: pcsc::Error) -> TransportError {
    use pcsc::Error as E;
    match e {
        E::NoService | E::ServiceStopped | E::CommError | E::InternalError => {
            TransportError::PcscUnavailable(e.to_string())
        }
        E::NoReadersAvailable | E::UnknownReader | E::ReaderUnavailable => {
            TransportError::NoReader(None)
        }
        E::NoSmartcard => TransportError::NoCard,
        E::RemovedCard | E::ResetCard | E::NotTransacted | E::UnpoweredCard => {
            TransportError::CardRemoved
        }
        E::SharingViolation => TransportError::CardBusy,
        other => TransportError::Reader(other.to_string()),
    }
}

fn establish() -> Result<Context, TransportError> {
    Context::establish(Scope::User).map_err(map_error)
}

fn reader_names(ctx: &Context) -> Result<Vec<CString>, TransportError> {
    match ctx.list_readers_owned() {
        Ok(names) => Ok(names),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(map_error(e)),
    }
}

/// Lists the readers and whether each holds a card, without connecting to any card.
pub fn list_readers() -> Result<Vec<ReaderInfo>, TransportError> {
    let ctx = establish()?;
    let names = reader_names(&ctx)?;
    let mut states: Vec<ReaderState> = names
        .iter()
        .map(|n| ReaderState::new(n.clone(), State::UNAWARE))
        .collect();
    if !states.is_empty() {
        ctx.get_status_change(std::time::Duration::ZERO, &mut states)
            .map_err(map_error)?;
    }
    Ok(states
        .iter()
        .map(|s| {
            let present = s.event_state().contains(State::PRESENT);
            ReaderInfo {
                name: s.name().to_string_lossy().into_owned(),
                card_present: present,
                atr: (present && !s.atr().is_empty()).then(|| s.atr().to_vec()),
            }
        })
        .collect())
}

/// Picks the reader: the exact name, else the only reader whose name contains it.
pub fn resolve_reader(wanted: &str, available: &[String]) -> Result<String, TransportError> {
    if let Some(exact) = available.iter().find(|n| n.as_str() == wanted) {
        return Ok(exact.clone());
    }
    let partial: Vec<&String> = available.iter().filter(|n| n.contains(wanted)).collect();
    match partial.as_slice() {
        [one] => Ok((*one).clone()),
        _ => Err(TransportError::NoReader(Some(wanted.to_string()))),
    }
}

/// An exclusive connection to the card in one reader.
pub struct PcscTransport {
    // Field order matters: the card must be dropped before its context.
    card: Option<Card>,
    _ctx: Context,
    reader: String,
    atr: Vec<u8>,
    /// Set once the card was seen gone: there is nothing left to power down.
    removed: bool,
}

impl PcscTransport {
    /// Connects exclusively (no other program can use the card while the password is
    /// verified), with T=1 or whatever the card offers.
    pub fn connect(reader: &str) -> Result<PcscTransport, TransportError> {
        let ctx = establish()?;
        let names: Vec<String> = reader_names(&ctx)?
            .iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        if names.is_empty() {
            return Err(TransportError::NoReader(None));
        }
        let name = resolve_reader(reader, &names)?;
        let cname = CString::new(name.clone())
            .map_err(|_| TransportError::NoReader(Some(reader.to_string())))?;
        let card = ctx
            .connect(&cname, ShareMode::Exclusive, Protocols::T1 | Protocols::ANY)
            .map_err(map_error)?;
        // SCardStatus rather than an attribute query: not every driver answers attributes.
        let atr = card.status2_owned().map_err(map_error)?.atr().to_vec();
        Ok(PcscTransport {
            card: Some(card),
            _ctx: ctx,
            reader: name,
            atr,
            removed: false,
        })
    }

    fn card(&self) -> Result<&Card, TransportError> {
        self.card.as_ref().ok_or(TransportError::CardRemoved)
    }
}

impl Transport for PcscTransport {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let mut buffer = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        let result = self
            .card()?
            .transmit(command, &mut buffer)
            .map_err(map_error)
            .and_then(|r| require_status_word(r.to_vec()));
        if result == Err(TransportError::CardRemoved) {
            self.removed = true;
        }
        result
    }

    fn atr(&self) -> &[u8] {
        &self.atr
    }

    fn reader_name(&self) -> &str {
        &self.reader
    }

    fn card_present(&mut self) -> Result<bool, TransportError> {
        let card = self.card()?;
        let mut names = vec![0u8; 2048];
        let mut atr = vec![0u8; pcsc::MAX_ATR_SIZE];
        match card.status2(&mut names, &mut atr) {
            Ok(status) => Ok(status.status().contains(pcsc::Status::PRESENT)),
            Err(pcsc::Error::RemovedCard | pcsc::Error::NoSmartcard) => Ok(false),
            Err(e) => Err(map_error(e)),
        }
    }

    fn end_session(&mut self) -> Result<(), TransportError> {
        // A card that left cannot be powered down; asking the driver to try anyway only
        // disturbs some readers' removal handling.
        let disposition = if self.removed {
            Disposition::LeaveCard
        } else {
            Disposition::UnpowerCard
        };
        match self.card.take() {
            Some(card) => card.disconnect(disposition).map_err(|(_, e)| map_error(e)),
            None => Ok(()),
        }
    }
}

impl Drop for PcscTransport {
    fn drop(&mut self) {
        // Power the card down even when the flow ended early, so no verified state lingers.
        let _ = self.end_session();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_resolution() {
        let readers = vec![
            "Virtual PCD 00 00".to_string(),
            "Virtual PCD 00 01".to_string(),
            "SONY FeliCa RC-S300 00 00".to_string(),
        ];
        assert_eq!(
            resolve_reader("Virtual PCD 00 01", &readers),
            Ok("Virtual PCD 00 01".into())
        );
        assert_eq!(
            resolve_reader("FeliCa", &readers),
            Ok("SONY FeliCa RC-S300 00 00".into())
        );
        assert_eq!(
            resolve_reader("Virtual", &readers),
            Err(TransportError::NoReader(Some("Virtual".into())))
        );
        assert!(resolve_reader("nothing", &readers).is_err());
    }

    #[test]
    fn errors_map_to_what_the_user_can_act_on() {
        assert!(matches!(
            map_error(pcsc::Error::NoService),
            TransportError::PcscUnavailable(_)
        ));
        assert_eq!(map_error(pcsc::Error::NoSmartcard), TransportError::NoCard);
        assert_eq!(
            map_error(pcsc::Error::RemovedCard),
            TransportError::CardRemoved
        );
        assert_eq!(
            map_error(pcsc::Error::NotTransacted),
            TransportError::CardRemoved
        );
        assert_eq!(
            map_error(pcsc::Error::SharingViolation),
            TransportError::CardBusy
        );
    }
}
