//! The built-in functions that work on values alone (after Go's
//! `text/template/funcs.go`): comparisons, `index`, `slice`. Below `exec`,
//! above `value`.

use super::value::Val;
use std::borrow::Cow;
use std::cmp::Ordering;

/// A function's failure: the message after `error calling NAME: `.
pub(super) struct FuncError(pub(super) String);

/// Numeric comparison across Go's int, uint and float64 kinds (Go refuses
/// to compare an int with a float64; Portcullis compares their values).
fn num_cmp(a: &Val<'_>, b: &Val<'_>) -> Option<Ordering> {
    fn as_i128(v: &Val<'_>) -> Option<i128> {
        match v {
            Val::Int(i) => Some(i128::from(*i)),
            Val::Byte(b) => Some(i128::from(*b)),
            Val::Uint(u) => Some(i128::from(*u)),
            _ => None,
        }
    }
    fn as_f64(v: &Val<'_>) -> Option<f64> {
        match v {
            Val::Float(f) => Some(*f),
            #[allow(clippy::cast_precision_loss)]
            Val::Int(i) => Some(*i as f64),
            Val::Byte(b) => Some(f64::from(*b)),
            #[allow(clippy::cast_precision_loss)]
            Val::Uint(u) => Some(*u as f64),
            _ => None,
        }
    }
    if let (Some(x), Some(y)) = (as_i128(a), as_i128(b)) {
        return Some(x.cmp(&y));
    }
    as_f64(a)?.partial_cmp(&as_f64(b)?)
}

fn is_number(v: &Val<'_>) -> bool {
    matches!(v, Val::Int(_) | Val::Byte(_) | Val::Uint(_) | Val::Float(_))
}

/// Go's `eq` for one pair (numbers compare by value across int and float).
pub(super) fn go_eq(a: &Val<'_>, b: &Val<'_>) -> Result<bool, FuncError> {
    match (a, b) {
        (x, y) if x.is_nil() || y.is_nil() => Ok(x.is_nil() && y.is_nil()),
        (Val::Bool(x), Val::Bool(y)) => Ok(x == y),
        (Val::Str(x), Val::Str(y)) => Ok(x == y),
        (Val::Complex(a, b), Val::Complex(c, d)) => Ok(a == c && b == d),
        (x, y) if is_number(x) && is_number(y) => Ok(num_cmp(x, y) == Some(Ordering::Equal)),
        (Val::Arr(_), Val::Arr(_))
        | (Val::Map(..), Val::Map(..))
        | (Val::HeaderMap(_), Val::HeaderMap(_))
        | (Val::Strings(_), Val::Strings(_)) => {
            Err(FuncError(format!("non-comparable type {}", a.type_name())))
        }
        _ => Err(FuncError("incompatible types for comparison".into())),
    }
}

/// Go's `lt`.
pub(super) fn go_lt(a: &Val<'_>, b: &Val<'_>) -> Result<bool, FuncError> {
    let basic = |v: &Val<'_>| matches!(v, Val::Str(_)) || is_number(v);
    if !basic(a) || !basic(b) {
        return Err(FuncError("invalid type for comparison".into()));
    }
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Ok(x.as_bytes() < y.as_bytes()),
        (x, y) if is_number(x) && is_number(y) => Ok(num_cmp(x, y) == Some(Ordering::Less)),
        _ => Err(FuncError("incompatible types for comparison".into())),
    }
}

/// Go's `indexArg`: an integer index below `cap`.
fn index_arg(ix: &Val<'_>, cap: usize) -> Result<usize, FuncError> {
    let x: i128 = match ix {
        Val::Int(i) => i128::from(*i),
        Val::Byte(b) => i128::from(*b),
        Val::Uint(u) => i128::from(*u),
        Val::Nil | Val::NoValue => {
            return Err(FuncError("cannot index slice/array with nil".into()))
        }
        other => {
            return Err(FuncError(format!(
                "cannot index slice/array with type {}",
                other.type_name()
            )))
        }
    };
    match usize::try_from(x).ok().filter(|i| *i <= cap) {
        Some(i) => Ok(i),
        None => Err(FuncError(format!("index out of range: {x}"))),
    }
}

/// Go's `index`.
pub(super) fn go_index<'a>(item: Val<'a>, indexes: &[Val<'a>]) -> Result<Val<'a>, FuncError> {
    if item.is_nil() {
        return Err(FuncError("index of untyped nil".into()));
    }
    let mut item = item;
    for ix in indexes {
        item = match item {
            Val::Nil | Val::NoValue => return Err(FuncError("index of nil pointer".into())),
            Val::Arr(_) | Val::Str(_) | Val::Strings(_) => {
                let len = match &item {
                    Val::Arr(a) => a.len(),
                    Val::Str(s) => s.len(),
                    Val::Strings(s) => s.as_ref().map_or(0, Vec::len),
                    _ => 0,
                };
                let i = index_arg(ix, len)?;
                if i == len {
                    return Err(FuncError(format!("index out of range: {i}")));
                }
                match item {
                    Val::Arr(a) => a.get(i).map_or(Val::NoValue, Val::from_json),
                    Val::Str(s) => Val::Byte(s.as_bytes().get(i).copied().unwrap_or(0)),
                    Val::Strings(s) => s
                        .as_ref()
                        .and_then(|s| s.get(i))
                        .map_or(Val::NoValue, |v| Val::Str(Cow::Borrowed(v))),
                    _ => Val::NoValue,
                }
            }
            Val::Map(m, _) => match ix {
                Val::Str(k) => m.get(k.as_ref()).map_or(Val::Nil, Val::from_json),
                Val::Nil | Val::NoValue => {
                    return Err(FuncError("value is nil; should be of type string".into()))
                }
                other => {
                    return Err(FuncError(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    )))
                }
            },
            Val::HeaderMap(h) => match ix {
                Val::Str(k) => Val::Strings(
                    h.iter()
                        .find(|(name, _)| name == k.as_ref())
                        .map(|(_, v)| v.clone()),
                ),
                Val::Nil | Val::NoValue => {
                    return Err(FuncError("value is nil; should be of type string".into()))
                }
                other => {
                    return Err(FuncError(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    )))
                }
            },
            other => {
                return Err(FuncError(format!(
                    "can't index item of type {}",
                    other.type_name()
                )))
            }
        };
    }
    Ok(item)
}

/// Go's `slice` (indexes past the length are refused: Go may read its
/// slice's spare capacity there).
pub(super) fn go_slice<'a>(item: Val<'a>, indexes: &[Val<'a>]) -> Result<Val<'a>, FuncError> {
    if item.is_nil() {
        return Err(FuncError("slice of untyped nil".into()));
    }
    if indexes.len() > 3 {
        return Err(FuncError(format!(
            "too many slice indexes: {}",
            indexes.len()
        )));
    }
    let len = match &item {
        Val::Str(s) => {
            if indexes.len() == 3 {
                return Err(FuncError("cannot 3-index slice a string".into()));
            }
            s.len()
        }
        Val::Arr(a) => a.len(),
        Val::Strings(s) => s.as_ref().map_or(0, Vec::len),
        other => {
            return Err(FuncError(format!(
                "can't slice item of type {}",
                other.type_name()
            )))
        }
    };
    let mut idx = [0usize, len, len];
    for (k, ix) in indexes.iter().enumerate() {
        let x = index_arg(ix, len)?;
        if let Some(slot) = idx.get_mut(k) {
            *slot = x;
        }
    }
    let [i, j, k3] = idx;
    if i > j {
        return Err(FuncError(format!("invalid slice index: {i} > {j}")));
    }
    if indexes.len() == 3 && j > k3 {
        return Err(FuncError(format!("invalid slice index: {j} > {k3}")));
    }
    Ok(match item {
        Val::Str(s) => match s {
            Cow::Borrowed(b) => match b.get(i..j) {
                Some(sub) => Val::Str(Cow::Borrowed(sub)),
                None => return Err(FuncError("slice splits a UTF-8 character".into())),
            },
            Cow::Owned(o) => match o.get(i..j) {
                Some(sub) => Val::Str(Cow::Owned(sub.to_string())),
                None => return Err(FuncError("slice splits a UTF-8 character".into())),
            },
        },
        Val::Arr(a) => Val::Arr(a.get(i..j).unwrap_or(&[])),
        Val::Strings(s) => Val::Strings(Some(
            s.as_ref()
                .and_then(|v| v.get(i..j))
                .map(<[&str]>::to_vec)
                .unwrap_or_default(),
        )),
        _ => Val::NoValue,
    })
}
