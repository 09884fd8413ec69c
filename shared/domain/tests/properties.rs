//! Property tests of diff and three-way merge over generated products.

use proptest::prelude::*;
use shopsync_domain::fields::{apply, diff};
use shopsync_domain::testing::sample_content;
use shopsync_domain::{
    three_way, FieldOutcome, LocationId, Money, ProductContent, ProductStatus, Quantity, Side,
};

/// Edits a sample product in ways chosen by the generator.
#[derive(Debug, Clone)]
enum Edit {
    Title(String),
    Vendor(String),
    Status(u8),
    Tag(String),
    Price(usize, u32),
    Stock(usize, i64),
    DropVariant(usize),
    Barcode(usize, Option<String>),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        "[a-zA-Z ]{0,12}".prop_map(Edit::Title),
        "[a-z]{1,8}".prop_map(Edit::Vendor),
        (0u8..4).prop_map(Edit::Status),
        "[a-z]{1,6}".prop_map(Edit::Tag),
        (0usize..4, 0u32..100_000).prop_map(|(i, c)| Edit::Price(i, c)),
        (0usize..4, -5i64..50).prop_map(|(i, q)| Edit::Stock(i, q)),
        (0usize..4).prop_map(Edit::DropVariant),
        (0usize..4, proptest::option::of("[0-9]{8}")).prop_map(|(i, b)| Edit::Barcode(i, b)),
    ]
}

fn apply_edits(base: &ProductContent, edits: &[Edit]) -> ProductContent {
    let mut c = base.clone();
    for e in edits {
        let n = c.variants.len();
        match e {
            Edit::Title(t) => c.title = t.clone(),
            Edit::Vendor(v) => c.vendor = v.clone(),
            Edit::Status(s) => {
                c.status = [
                    ProductStatus::Active,
                    ProductStatus::Draft,
                    ProductStatus::Archived,
                    ProductStatus::Unlisted,
                ][*s as usize]
            }
            Edit::Tag(t) => {
                c.tags.insert(t.clone());
            }
            Edit::Price(i, cents) if n > 0 => {
                c.variants[i % n].price = Money::from_cents(u64::from(*cents))
            }
            Edit::Stock(i, q) if n > 0 => {
                let loc = LocationId::new(61_000_000_009).unwrap();
                c.variants[i % n].inventory.insert(loc, Quantity(*q));
            }
            Edit::DropVariant(i) if n > 1 => {
                c.variants.remove(i % n);
            }
            Edit::Barcode(i, b) if n > 0 => c.variants[i % n].barcode = b.clone(),
            _ => {}
        }
    }
    c
}

fn scenario() -> impl Strategy<Value = (ProductContent, ProductContent, ProductContent)> {
    (
        1usize..5,
        prop::collection::vec(edit(), 0..6),
        prop::collection::vec(edit(), 0..6),
    )
        .prop_map(|(n, l, r)| {
            let base = sample_content(n);
            let local = apply_edits(&base, &l);
            let remote = apply_edits(&base, &r);
            (base, local, remote)
        })
}

proptest! {
    #[test]
    fn applying_a_diff_reproduces_the_target((a, b, _) in scenario()) {
        let (fa, fb) = (a.to_fields(), b.to_fields());
        let changes = diff(&fa, &fb);
        let applied = apply(&fa, &changes).unwrap();
        prop_assert_eq!(&applied, &fb);
        prop_assert_eq!(ProductContent::from_fields(&applied).unwrap(), b);
        prop_assert_eq!(changes.is_empty(), fa == fb);
    }

    #[test]
    fn merging_identical_sides_is_a_no_op((base, local, _) in scenario()) {
        let merge = three_way(Some(&base.to_fields()), &local.to_fields(), &local.to_fields());
        prop_assert!(!merge.has_conflicts());
        prop_assert!(merge.outcomes.values().all(|o| matches!(o, FieldOutcome::Unchanged | FieldOutcome::BothSame)));
        let (merged, open) = merge.resolve(&local.to_fields(), &local.to_fields(), Side::Local, |_, _| None);
        prop_assert!(open.is_empty());
        prop_assert_eq!(ProductContent::from_fields(&merged).unwrap(), local);
    }

    #[test]
    fn merge_is_symmetric_up_to_side_labels((base, local, remote) in scenario()) {
        let b = base.to_fields();
        let forward = three_way(Some(&b), &local.to_fields(), &remote.to_fields());
        let backward = three_way(Some(&b), &remote.to_fields(), &local.to_fields());
        prop_assert_eq!(forward.mirrored(), backward);
    }

    #[test]
    fn a_field_changed_on_one_side_only_never_conflicts((base, local, _) in scenario()) {
        let merge = three_way(Some(&base.to_fields()), &local.to_fields(), &base.to_fields());
        prop_assert!(!merge.has_conflicts());
        let (merged, _) = merge.resolve(&local.to_fields(), &base.to_fields(), Side::Remote, |_, _| None);
        prop_assert_eq!(ProductContent::from_fields(&merged).unwrap(), local);
    }

    #[test]
    fn resolving_every_conflict_one_way_yields_valid_content((base, local, remote) in scenario(), local_wins in any::<bool>()) {
        let merge = three_way(Some(&base.to_fields()), &local.to_fields(), &remote.to_fields());
        let side = if local_wins { Side::Local } else { Side::Remote };
        let (merged, open) = merge.resolve(&local.to_fields(), &remote.to_fields(), side, |_, _| Some(side));
        prop_assert!(open.is_empty());
        prop_assert!(ProductContent::from_fields(&merged).is_ok());
    }
}
