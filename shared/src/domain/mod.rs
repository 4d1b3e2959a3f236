//! Domain types. Each one validates on construction, so a value that exists is valid:
//! queries and handlers accept these types, never raw strings.

mod cursor;
mod email;
mod user;
mod user_id;
mod user_name;

pub use cursor::{Cursor, CursorError};
pub use email::{Email, EmailError};
pub use user::{NewUser, User, UserPatch};
pub use user_id::{UserId, UserIdError};
pub use user_name::{UserName, UserNameError};
