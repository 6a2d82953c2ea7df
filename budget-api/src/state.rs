//! What every request handler can reach.

use budget_events::db::DbPool;
use budget_events::writer::Writer;
use budget_projections::RunnerStatus;

pub struct AppState {
    pub pool: DbPool,
    pub writer: Writer,
    pub projections: RunnerStatus,
}
