//! The domain's types: identifiers, conversations, messages, presence, calls and the events
//! the core publishes. Nothing here knows a wire format or a database row: dialects decide
//! names and shapes, `store` converts rows. Every layer may use these types; they use none.

pub mod calls;
pub mod chat;
pub mod events;
pub mod ids;
pub mod message;
pub mod prekeys;
pub mod presence;
pub mod session;

pub use calls::*;
pub use chat::*;
pub use events::*;
pub use ids::*;
pub use message::*;
pub use prekeys::*;
pub use presence::*;
pub use session::*;
