"""Imports every model module so SQLAlchemy metadata and Alembic see all tables.

Each domain package that adds tables adds its models module here (and a module that
registers its privacy erase step, which must be imported for erasure to reach its tables).
"""

from campaigns import engine_models as campaign_engine_models  # noqa: F401
from campaigns import engine_privacy as campaign_privacy  # noqa: F401  (erase, export, merge)
from campaigns import journey_models as journey_models
from campaigns import journey_privacy as journey_privacy
from campaigns import models as campaign_models  # noqa: F401
from campaigns import multipliers as campaign_multipliers  # noqa: F401  (earn multipliers)
from campaigns import o2o as o2o_consumer  # noqa: F401  (outbox consumer: attribution)
from campaigns import profiles as campaign_profiles  # noqa: F401  (the profiles consumer)
from campaigns import referrals as referral_consumer  # noqa: F401  (outbox consumer)
from campaigns import triggers as journey_triggers  # noqa: F401  (outbox consumer)
from loyalty import idempotency, outbox  # noqa: F401
from loyalty.auth import models as auth_models  # noqa: F401
from loyalty.coupons import models as coupon_models  # noqa: F401
from loyalty.dashboard import audit as dashboard_audit  # noqa: F401  (erase step)
from loyalty.dashboard import models as dashboard_models  # noqa: F401
from loyalty.earning import models as earning_models  # noqa: F401
from loyalty.ledger import models as ledger_models  # noqa: F401
from loyalty.members import models as member_models  # noqa: F401
from loyalty.outbox import erasure as outbox_erasure  # noqa: F401  (registers an erase step)
from loyalty.stores import models as store_models  # noqa: F401
from loyalty.tiers import models as tier_models  # noqa: F401
from notifications import consent as notify_consent  # noqa: F401
from notifications import consent_texts as notify_consent_texts  # noqa: F401
from notifications import consumers as notify_consumers  # noqa: F401  (outbox consumer)
from notifications import models as notify_models  # noqa: F401
from notifications import privacy as notify_privacy  # noqa: F401  (export, erase step)
from notifications import push as notify_push  # noqa: F401  (push subscriptions, erase step)
from notifications.login_codes import models as login_code_models  # noqa: F401
from notifications.login_codes import operations as login_codes  # noqa: F401  (outgoing hook)
from notifications.webhooks import models as webhook_models  # noqa: F401
from notifications.webhooks import operations as webhook_operations  # noqa: F401  (consumer)
