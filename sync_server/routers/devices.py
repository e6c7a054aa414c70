"""The account's devices: list and revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from sqlalchemy import delete, select, update

from sync_server.accounts import audit, now
from sync_server.deps import CurrentPrincipal, StateDep
from sync_server.errors import ProblemError
from sync_server.models import Device, LocalToken, Recovery
from sync_server.protocol import DEVICE_ID_PATTERN, DeviceList, DeviceOut
from sync_server.routing import ApiRoute

router = APIRouter(tags=["devices"], route_class=ApiRoute)


@router.get("/v1/devices", summary="List devices")
async def list_devices(principal: CurrentPrincipal, state: StateDep) -> DeviceList:
    """Every device that has used the account, newest first, revoked ones included."""
    async with state.db.read() as session:
        rows = (
            await session.execute(
                select(Device)
                .where(Device.account_id == principal.account_id)
                .order_by(Device.created_at.desc(), Device.id)
            )
        ).scalars()
        devices = [
            DeviceOut(
                id=row.id,
                name=row.name,
                created_at=row.created_at,
                last_seen_at=row.last_seen_at,
                revoked_at=row.revoked_at,
                current=row.id == principal.device_id,
            )
            for row in rows
        ]
    return DeviceList(devices=devices)


@router.delete(
    "/v1/devices/{device_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a device",
)
async def revoke_device(
    device_id: Annotated[str, Path(pattern=DEVICE_ID_PATTERN)],
    principal: CurrentPrincipal,
    state: StateDep,
) -> Response:
    """The device's tokens stop working and its pending recoveries are cancelled."""
    async with state.db.write() as session:
        device = await session.get(Device, (principal.account_id, device_id))
        if device is None:
            raise ProblemError(404, "Not found", "No such device.", slug="not-found")
        if device.revoked_at is None:
            moment = now()
            device.revoked_at = moment
            await session.execute(
                delete(LocalToken).where(
                    LocalToken.account_id == principal.account_id,
                    LocalToken.device_id == device_id,
                )
            )
            await session.execute(
                update(Recovery)
                .where(
                    Recovery.account_id == principal.account_id,
                    Recovery.device_id == device_id,
                    Recovery.status == "pending",
                )
                .values(
                    status="cancelled", finished_at=moment, finished_by_device=principal.device_id
                )
            )
            await audit(
                session, principal.account_id, "device.revoked", principal.device_id, device_id
            )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
