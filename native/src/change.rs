//! Change tracking, one mechanism for every part of a window's state that the changelog logs and documents
//! publish (its summary, quantile sketches, user sketch, breakdowns and item shards, and the item state's shards).
//!
//! A part is one piece, or up to 32 (item shards: a bit each). Its `Change` knows which pieces changed since the
//! last flush (the changelog logs them), which since their documents last went out (a flush's plan publishes
//! them), and whether any record of the part is in the changelog (so dropping it takes tombstones). Only
//! `touch`, `flushed` and, on restore, `restored` move it.

/// What changed, of one part, since the last flush and since its publication.
#[derive(Default, Clone, Copy, Debug)]
pub struct Change {
    dirty: u32,
    unpublished: u32,
    logged: bool,
}

impl Change {
    /// The part (its only piece) changed.
    pub fn touch(&mut self) {
        self.dirty |= 1;
    }
    /// Piece `piece` of the part changed.
    pub fn touch_piece(&mut self, piece: usize) {
        self.dirty |= 1 << piece;
    }
    /// Whether this flush logs the part.
    pub fn to_log(&self) -> bool {
        self.dirty != 0
    }
    /// The pieces this flush logs (a bit each).
    pub fn pieces_to_log(&self) -> u32 {
        self.dirty
    }
    /// Whether a document of the part waits to go out.
    pub fn to_publish(&self) -> bool {
        self.pieces_to_publish() != 0
    }
    /// The pieces whose documents wait to go out.
    pub fn pieces_to_publish(&self) -> u32 {
        self.dirty | self.unpublished
    }
    /// Whether some record of the part is in the changelog.
    pub fn logged(&self) -> bool {
        self.logged
    }
    /// Once a flush is handed to its transaction (it logged what changed), which published the waiting documents
    /// or not.
    pub fn flushed(&mut self, published: bool) {
        self.logged |= self.dirty != 0;
        self.unpublished = if published { 0 } else { self.unpublished | self.dirty };
        self.dirty = 0;
    }
    /// Piece `piece` read back from the changelog; `unpublished`: without proof that its document went out.
    pub fn restored(&mut self, piece: usize, unpublished: bool) {
        self.logged = true;
        if unpublished {
            self.unpublished |= 1 << piece;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_logged_once_and_stays_pending_until_published() {
        let mut c = Change::default();
        assert!(!c.to_log() && !c.to_publish() && !c.logged());
        c.touch_piece(3);
        assert_eq!((c.pieces_to_log(), c.pieces_to_publish()), (8, 8));
        c.flushed(false);
        assert!(!c.to_log() && c.to_publish() && c.logged());
        c.touch_piece(0);
        c.flushed(false);
        assert_eq!(c.pieces_to_publish(), 9);
        c.flushed(true);
        assert!(!c.to_publish() && c.logged());
    }

    #[test]
    fn a_restored_piece_is_logged_and_waits_only_without_proof_of_publication() {
        let mut c = Change::default();
        c.restored(2, false);
        assert!(c.logged() && !c.to_publish());
        c.restored(5, true);
        assert_eq!(c.pieces_to_publish(), 32);
    }
}
