/* placeholder: consumer */
